package main

import (
	"io/fs"
	"path/filepath"

	"github.com/dgraph-io/badger/v4"

	"github.com/walletledger/ledger/badgerstore"
)

// Bytes on disk per entry are the size of a store's files after Close,
// less what the same kind of store leaves in an empty directory, over the
// entries written. The fixed part matters: Badger preallocates a 1 MiB
// DISCARD file, which alone would add 200 bytes to every entry of a
// durable run of 5,000 entries.

// Kinds of store on disk.
const (
	kindBadgerstore = "badgerstore"
	kindBadger      = "raw Badger"
	kindSQLite      = "SQLite"
)

// emptyStores create an empty store of each kind in a directory and
// close it.
var emptyStores = map[string]func(dir string) error{
	kindBadgerstore: func(dir string) error {
		s, err := badgerstore.Open(dir)
		if err != nil {
			return err
		}
		return s.Close()
	},
	kindBadger: func(dir string) error {
		db, err := badger.Open(badger.DefaultOptions(dir).WithLogger(nil))
		if err != nil {
			return err
		}
		return db.Close()
	},
	kindSQLite: func(dir string) error {
		s, err := openSQLite(filepath.Join(dir, sqliteFile))
		if err != nil {
			return err
		}
		return s.Close()
	},
}

// fixedBytes returns the size of an empty store of the kind after Close,
// measured once.
func (b *bench) fixedBytes(kind string) (int64, error) {
	if n, ok := b.fixed[kind]; ok {
		return n, nil
	}
	dir, cleanup, err := b.tempDir("empty")
	if err != nil {
		return 0, err
	}
	defer cleanup()
	if err := emptyStores[kind](dir); err != nil {
		return 0, err
	}
	n, err := dirSize(dir)
	if err != nil {
		return 0, err
	}
	if b.fixed == nil {
		b.fixed = make(map[string]int64)
	}
	b.fixed[kind] = n
	return n, nil
}

// diskPerEntry returns the bytes per entry of the closed store of the
// kind in dir, which holds n entries.
func (b *bench) diskPerEntry(kind, dir string, n int64) (float64, error) {
	fixed, err := b.fixedBytes(kind)
	if err != nil {
		return 0, err
	}
	size, err := dirSize(dir)
	if err != nil {
		return 0, err
	}
	return perEntry(uint64(fixed), uint64(size), n), nil
}

// dirSize returns the total size of the regular files under dir.
func dirSize(dir string) (int64, error) {
	var total int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		total += fi.Size()
		return nil
	})
	return total, err
}

// diskRow ends a write configuration on disk: the first of the run's and
// the close's errors, else the row with the rate and bytes on disk per
// entry written.
func (b *bench) diskRow(kind, dir string, res result, err, closeErr error) (row, error) {
	if err == nil {
		err = closeErr
	}
	if err != nil {
		return row{}, err
	}
	disk, err := b.diskPerEntry(kind, dir, res.written)
	if err != nil {
		return row{}, err
	}
	return row{rate: res.rate(), unit: "entries/s", entries: res.written, mem: -1, disk: disk}, nil
}
