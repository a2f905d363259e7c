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
