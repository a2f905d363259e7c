package badgerstore_test

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/stretchr/testify/require"

	"github.com/walletledger/ledger"
	"github.com/walletledger/ledger/badgerstore"
)

// untar extracts a testdata archive into a new directory.
func untar(t *testing.T, archive string) string {
	t.Helper()
	f, err := os.Open(archive)
	require.NoError(t, err)
	defer f.Close()
	zr, err := gzip.NewReader(f)
	require.NoError(t, err)
	tr := tar.NewReader(zr)
	dir := t.TempDir()
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return dir
		}
		require.NoError(t, err)
		if h.Typeflag != tar.TypeReg {
			continue
		}
		out, err := os.OpenFile(filepath.Join(dir, filepath.Base(h.Name)), os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o600)
		require.NoError(t, err)
		_, err = io.Copy(out, tr)
		require.NoError(t, err)
		require.NoError(t, out.Close())
	}
}

func formatVersionOf(t *testing.T, dir string) uint64 {
	t.Helper()
	db, err := badger.Open(badger.DefaultOptions(dir).WithLogger(nil))
	require.NoError(t, err)
	defer db.Close()
	var v uint64
	require.NoError(t, db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(badgerstore.FormatKey)
		require.NoError(t, err)
		b, err := item.ValueCopy(nil)
		require.NoError(t, err)
		v, _ = binary.Uvarint(b)
		return nil
	}))
	return v
}

// TestUpgradeFormat1 opens a directory written by the release before
// item uses were recorded (format 1, record version 1:
// testdata/format1.tar.gz, made by testdata/format1.go.txt) and finds
// everything as that release wrote it: the items it used read as used,
// with no use time or authority. New uses on it are recorded in full,
// and survive a reopen.
func TestUpgradeFormat1(t *testing.T) {
	ctx := context.Background()
	dir := untar(t, filepath.Join("testdata", "format1.tar.gz"))
	require.Equal(t, uint64(1), formatVersionOf(t, dir))

	s, err := badgerstore.Open(dir)
	require.NoError(t, err, "a format 1 directory opens")
	clock := time.Date(2027, 5, 6, 7, 8, 9, 123456789, time.UTC)
	l := newLedger(t, s, ledger.WithClock(func() time.Time { return clock }))
	require.NoError(t, l.Verify(ctx))
	es, err := l.Entries(ctx, ledger.EntryQuery{})
	require.NoError(t, err)
	require.Len(t, es, 4)
	var names []string
	usedBefore := map[string]bool{}
	for _, e := range es[1:] {
		require.NotNil(t, e.Item)
		names = append(names, e.Item.Name)
		usedBefore[e.Item.Name] = e.Item.Used
		require.True(t, e.Item.UsedOn.IsZero(), "%s: no use time was recorded", e.Item.Name)
		require.Empty(t, e.Item.UsedBy, "%s: no authority was recorded", e.Item.Name)
	}
	require.Equal(t, []string{"Soda Can", "Cake", "Poster"}, names)
	require.Equal(t, map[string]bool{"Soda Can": true, "Cake": false, "Poster": true}, usedBefore)
	require.Equal(t, ` {"fizz": true} `, string(es[1].Item.Data), "item data byte for byte")
	require.Equal(t, map[string]string{"alice": "6.5"}, totals(t, l, ledger.WalletQuery{}))

	// A use made before uses were recorded has no key: no retry matches it.
	_, err = l.UseItem(ctx, "arcade", es[1].ID, ledger.UseIdempotencyKey("k"))
	require.ErrorIs(t, err, ledger.ErrItemUsed)
	// A new use is recorded in full, on the old data.
	cake, err := l.UseItem(ctx, "shop", es[2].ID, ledger.UseIdempotencyKey("use-cake"), ledger.ForUser("alice"))
	require.NoError(t, err)
	require.Equal(t, clock, cake.Item.UsedOn)
	require.Equal(t, "shop", cake.Item.UsedBy)
	require.NoError(t, l.Close())
	require.Equal(t, uint64(badgerstore.FormatVersion), formatVersionOf(t, dir), "Open marked the directory with the new format")

	l = newLedger(t, open(t, dir))
	require.NoError(t, l.Verify(ctx))
	again, err := l.UseItem(ctx, "shop", es[2].ID, ledger.UseIdempotencyKey("use-cake"))
	require.NoError(t, err, "the use's key survives a reopen")
	require.Equal(t, cake, again)
	es2, err := l.Entries(ctx, ledger.EntryQuery{})
	require.NoError(t, err)
	require.Equal(t, append(append([]ledger.Entry{}, es[:2]...), cake, es[3]), es2)
}

// format2Totals are the wallets of testdata/format2.tar.gz (made by
// testdata/format2.go.txt), over all authorities and from "shop".
var format2Totals = map[string]map[string]string{
	"":     {"alice": "28.25", "bob": "32.75", "carol": "36.75", "dave": "36.625"},
	"shop": {"alice": "7.75", "bob": "10.25", "carol": "12.25", "dave": "13.25"},
}

// walletsFrom selects every wallet, counting only auth's entries ("" for
// all).
func walletsFrom(auth string) ledger.WalletQuery {
	if auth == "" {
		return ledger.WalletQuery{}
	}
	return ledger.WalletQuery{AuthorityIDs: []string{auth}}
}

// requireFormat2Data checks that l holds what the format 2 fixture was
// written with, and returns its entries.
func requireFormat2Data(t *testing.T, l *ledger.Ledger) []ledger.Entry {
	t.Helper()
	ctx := context.Background()
	require.NoError(t, l.Verify(ctx))
	for auth, want := range format2Totals {
		require.Equal(t, want, totals(t, l, walletsFrom(auth)), "totals from authority %q", auth)
	}
	es, err := l.Entries(ctx, ledger.EntryQuery{})
	require.NoError(t, err)
	require.Len(t, es, 16)
	items := map[string]*ledger.Item{}
	for _, e := range es {
		require.Empty(t, e.Currency, "an entry of format 2 is in the default currency")
		require.Empty(t, e.Metadata)
		require.Empty(t, e.TransferID+e.Reverses+e.ReversedBy)
		if e.Item != nil {
			require.False(t, e.Item.Revoked)
			items[e.Item.Name] = e.Item
		}
	}
	require.Len(t, items, 3)
	require.True(t, items["Soda Can"].Used)
	require.Equal(t, "arcade", items["Soda Can"].UsedBy, "a format 2 use keeps who used it")
	require.False(t, items["Soda Can"].UsedOn.IsZero(), "and when")
	require.Equal(t, ` {"fizz": true} `, string(items["Soda Can"].Data), "item data byte for byte")
	require.False(t, items["Cake"].Used)
	require.True(t, items["Poster"].Used)
	require.Len(t, items["Poster"].Data, 302, "a record in the value log")
	for _, user := range []string{"alice", "bob", "carol", "dave"} {
		mine, err := l.Entries(ctx, ledger.EntryQuery{UserIDs: []string{user}})
		require.NoError(t, err)
		require.NotEmpty(t, mine, "the by-user index of format 2 serves %s", user)
		for _, e := range mine {
			require.Equal(t, user, e.UserID)
		}
	}
	return es
}

// TestUpgradeFormat2 opens a directory written by the release before
// wallets had currencies (format 2: testdata/format2.tar.gz, made by
// testdata/format2.go.txt), which moves its totals to format 3's keys,
// and finds every entry, total, use and idempotency key as that release
// wrote them; new entries add to the migrated totals.
func TestUpgradeFormat2(t *testing.T) {
	ctx := context.Background()
	dir := untar(t, filepath.Join("testdata", "format2.tar.gz"))
	require.Equal(t, uint64(2), formatVersionOf(t, dir))

	l := newLedger(t, open(t, dir))
	es := requireFormat2Data(t, l)
	again, err := l.CreateEntry(ctx, ledger.NewEntry{AuthorityID: "shop", UserID: "alice", Amount: dec("-2.50"), Reason: "r -2.50",
		Item: &ledger.Item{Name: "Soda Can", Data: []byte(` {"fizz": true} `)}, IdempotencyKey: "order-1"})
	require.NoError(t, err, "an idempotency key of format 2 still answers its retry")
	require.Equal(t, es[12], again)
	soda, err := l.UseItem(ctx, "arcade", es[12].ID, ledger.UseIdempotencyKey("use-soda"))
	require.NoError(t, err, "a use's key of format 2 still answers its retry")
	require.Equal(t, es[12].ID, soda.ID)
	e, err := l.CreateEntry(ctx, ledger.NewEntry{AuthorityID: "shop", UserID: "alice", Amount: dec("1"), Reason: "after"})
	require.NoError(t, err)
	require.Equal(t, "29.25", e.Balance.String(), "a new entry adds to the migrated total")
	require.NoError(t, l.Close())
	require.Equal(t, uint64(badgerstore.FormatVersion), formatVersionOf(t, dir))

	l = newLedger(t, open(t, dir))
	require.NoError(t, l.Verify(ctx))
	require.Equal(t, "8.75", totals(t, l, walletsFrom("shop"))["alice"])
}

// TestUpgradeInterrupted stops the migration of the format 2 fixture
// after a transaction, twice, as a crash would: the directory then
// refuses an older release (the new format is marked first), and each
// Open resumes the migration until one finishes it, with every total,
// entry and change as an uninterrupted migration leaves them.
func TestUpgradeInterrupted(t *testing.T) {
	refStore := open(t, untar(t, filepath.Join("testdata", "format2.tar.gz")))
	wantFeed := readFeed(t, refStore, "")
	want := requireFormat2Data(t, newLedger(t, refStore))

	dir := untar(t, filepath.Join("testdata", "format2.tar.gz"))
	crash := errors.New("crash")
	batches := 0
	for range 2 {
		_, err := badgerstore.Open(dir, badgerstore.WithMigration(5, func() error { batches++; return crash }))
		require.ErrorIs(t, err, crash)
		require.Equal(t, uint64(badgerstore.FormatVersion), formatVersionOf(t, dir), "marked with the new format before any total moves")
	}
	require.Equal(t, 2, batches)
	s := open(t, dir, badgerstore.WithMigration(5, func() error { batches++; return nil }))
	require.Equal(t, 8, batches, "16 totals in batches of 5, resumed where it stopped, then 18 changes in batches of 5")
	require.Equal(t, wantFeed, readFeed(t, s, ""), "the feed's past as an uninterrupted upgrade writes it")
	l := newLedger(t, s)
	require.Equal(t, want, requireFormat2Data(t, l))
	require.NoError(t, l.Close())

	db, err := badger.Open(badger.DefaultOptions(dir).WithLogger(nil))
	require.NoError(t, err)
	defer db.Close()
	require.NoError(t, db.View(func(txn *badger.Txn) error {
		_, err := txn.Get(badgerstore.MigrateKey)
		require.ErrorIs(t, err, badger.ErrKeyNotFound, "the migration marker is cleared")
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{'t'}})
		defer it.Close()
		it.Rewind()
		require.False(t, it.Valid(), "no total is left under the old keys")
		return nil
	}))
}
