package badgerstore_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
	"github.com/stretchr/testify/require"

	"github.com/walletledger/ledger"
	"github.com/walletledger/ledger/badgerstore"
)

// TestCorruptionIsAnError flips one byte of an item's data in the files
// on disk and checks that every read of that entry fails, rather than
// serving the changed data. The flipped byte keeps the data valid JSON
// and the record well formed, so only a checksum can tell.
func TestCorruptionIsAnError(t *testing.T) {
	for _, tc := range []struct {
		name string
		// dataBytes sizes the item data: records of 256 bytes or more
		// live in the value log, smaller ones in the LSM tree's tables.
		dataBytes int
		ext       string // the files holding the record
		// reopen opens and closes the store once more before the
		// corruption, so that the record's value log is an older one,
		// which Badger does not read back when it opens.
		reopen bool
		// openFails: Open itself finds the corruption (Badger checks
		// every table it opens).
		openFails bool
		opts      []badgerstore.Option
	}{
		{name: "older value log", dataBytes: 600, ext: ".vlog", reopen: true},
		// Badger reads the latest value log back when it opens and
		// truncates it at the first entry that fails its checksum,
		// taking the entries after it: their reads fail.
		{name: "latest value log", dataBytes: 600, ext: ".vlog"},
		// Uncompressed, so that the test finds the data in the file:
		// compression may match a few bytes of the marker elsewhere.
		{name: "table", dataBytes: 60, ext: ".sst", openFails: true, opts: []badgerstore.Option{
			badgerstore.WithBadgerOptions(func(o badger.Options) badger.Options { return o.WithCompression(options.None) }),
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			dir := t.TempDir()
			s, err := badgerstore.Open(dir, tc.opts...)
			require.NoError(t, err)
			l, err := ledger.New(s)
			require.NoError(t, err)
			markers := []string{rand.Text(), rand.Text(), rand.Text()}
			marker := func(i int) string { return markers[i] }
			// Entries before and after, so that the tables have blocks
			// on both sides of the corrupted one: Badger reads a
			// table's first and last block when it opens it.
			filler := func() {
				t.Helper()
				batch := make([]ledger.NewEntry, 500)
				for i := range batch {
					batch[i] = ledger.NewEntry{AuthorityID: "bank", UserID: "u" + rand.Text(), Amount: dec("1"), Reason: "filler"}
				}
				_, err := l.CreateEntries(ctx, batch)
				require.NoError(t, err)
			}
			filler()
			ids := make([]string, 3)
			for i := range ids {
				pad := "x" + rand.Text()
				for len(pad) < tc.dataBytes {
					pad += rand.Text()
				}
				data := json.RawMessage(fmt.Sprintf(`{"note":%q}`, marker(i)+pad))
				_, err := l.CreateEntry(ctx, ledger.NewEntry{AuthorityID: "shop", UserID: "alice", Amount: dec("1"), Reason: "grant"})
				require.NoError(t, err)
				e, err := l.CreateEntry(ctx, ledger.NewEntry{
					AuthorityID: "shop", UserID: "alice", Amount: dec("0"), Reason: "grant",
					Item: &ledger.Item{Name: "sword", Data: data},
				})
				require.NoError(t, err)
				ids[i] = e.ID
			}
			filler()
			require.NoError(t, l.Close())
			if tc.reopen {
				s, err := badgerstore.Open(dir, tc.opts...)
				require.NoError(t, err)
				require.NoError(t, s.Close())
			}

			// Entry 1's data becomes {"note":"<marker>y...}: the same
			// length, still JSON.
			flipAfter(t, dir, tc.ext, []byte(marker(1)))

			s, err = badgerstore.Open(dir, tc.opts...)
			if tc.openFails {
				if err == nil {
					closeStore(t, s)
				}
				require.Error(t, err, "Open of a corrupt table")
				return
			}
			require.NoError(t, err)
			t.Cleanup(func() { closeStore(t, s) })
			// Read through the store, as the ledger's reads do: New
			// itself reads the last entry, which the truncation of the
			// latest value log makes unreadable.
			es, err := readEntries(s, ledger.Scan{Start: ids[1], End: ids[1] + "\x00"})
			require.ErrorIsf(t, err, badgerstore.ErrCorrupt, "scan of the corrupted entry returned %s", itemData(es))
			es, err = readEntries(s, ledger.Scan{UserID: "alice", ItemsOnly: true})
			require.ErrorIsf(t, err, badgerstore.ErrCorrupt, "scan of its user's items returned %s", itemData(es))
			err = s.View(ctx, func(tx ledger.ReadTx) error { _, err := tx.Entry(ctx, ids[1]); return err })
			require.ErrorIs(t, err, badgerstore.ErrCorrupt, "Entry")
			if tc.reopen {
				l := newLedger(t, s)
				es, err := l.Entries(ctx, ledger.EntryQuery{EntryIDs: []string{ids[1]}})
				require.ErrorIsf(t, err, badgerstore.ErrCorrupt, "Entries of the corrupted entry returned %s", itemData(es))
				inv, err := l.Inventory(ctx, ledger.InventoryQuery{UserIDs: []string{"alice"}})
				require.ErrorIsf(t, err, badgerstore.ErrCorrupt, "Inventory returned %d items", len(inv))
				require.ErrorIs(t, l.Verify(ctx), badgerstore.ErrCorrupt, "Verify")
			}
		})
	}
}

// flipAfter changes the byte that follows the only occurrence of marker
// in the files of dir ending in ext, from 'x' to 'y'.
func flipAfter(t *testing.T, dir, ext string, marker []byte) {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "*"+ext))
	require.NoError(t, err)
	found := 0
	for _, name := range names {
		b, err := os.ReadFile(name)
		require.NoError(t, err)
		i := bytes.Index(b, marker)
		if i < 0 {
			continue
		}
		require.Equal(t, -1, bytes.Index(b[i+1:], marker), "marker twice in %s", name)
		i += len(marker)
		require.Equal(t, byte('x'), b[i])
		f, err := os.OpenFile(name, os.O_WRONLY, 0)
		require.NoError(t, err)
		_, err = f.WriteAt([]byte{'y'}, int64(i))
		require.NoError(t, err)
		require.NoError(t, f.Close())
		found++
	}
	require.Equalf(t, 1, found, "files *%s holding %q", ext, marker)
}

// itemData returns the items' data of es, for a failure message.
func itemData(es []ledger.Entry) string {
	var b strings.Builder
	for _, e := range es {
		if e.Item != nil {
			fmt.Fprintf(&b, "%.30s... ", e.Item.Data)
		}
	}
	return b.String()
}

// readEntries returns the records sc selects from s, with the first
// error.
func readEntries(s ledger.Store, sc ledger.Scan) ([]ledger.Entry, error) {
	var es []ledger.Entry
	err := s.View(context.Background(), func(tx ledger.ReadTx) error {
		for r, err := range tx.Entries(context.Background(), sc) {
			if err != nil {
				return err
			}
			es = append(es, r.Entry)
		}
		return nil
	})
	return es, err
}
