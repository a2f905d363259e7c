package badgerstore_test

import (
	"context"
	"fmt"
	"iter"
	"slices"
	"testing"

	"github.com/shopspring/decimal"
	"github.com/stretchr/testify/require"

	"github.com/walletledger/ledger"
	"github.com/walletledger/ledger/badgerstore"
)

// The ledger only hands a store IDs of 24 hex digits, but the key layout
// does not rely on it: it keeps apart IDs that are prefixes of one
// another, empty, or made of 0x00 and 0xFF bytes, which sit at the edges
// of Badger's seeks.
var oddIDs = []string{"", "a", "ab", "\x00", "\x00\x00", "a\xff", "\xff", "\xff\xff\xff", "b"}

func TestScanOddIDs(t *testing.T) {
	ctx := context.Background()
	s := open(t, "", badgerstore.WithInMemory())
	users := []string{"a", "ab", "\xff", "b"}
	auths := []string{"x", "xa", "\x00"}
	var all []ledger.Record
	for i, id := range oddIDs {
		for j, u := range users {
			r := ledger.Record{Entry: ledger.Entry{
				ID: u + "|" + id, UserID: u, AuthorityID: auths[(i+j)%len(auths)], Amount: decimal.NewFromInt(int64(i)),
			}}
			if (i+j)%2 == 0 {
				r.Item = &ledger.Item{Name: "n"}
			}
			all = append(all, r)
		}
	}
	// Also odd IDs that start as the ledger's do, with a hex digit (the
	// by-user index relies on it, and the odd bounds fall below it), and
	// IDs that would make user "a"'s index keys equal to user "ab"'s if
	// the user were not length-prefixed.
	for _, id := range oddIDs {
		all = append(all, ledger.Record{Entry: ledger.Entry{ID: "0" + id, UserID: "a", AuthorityID: "x"}})
		all = append(all, ledger.Record{Entry: ledger.Entry{ID: "bab|" + id, UserID: "a", AuthorityID: "xa"}})
	}
	require.NoError(t, s.Update(ctx, func(tx ledger.Tx) error {
		for _, r := range all {
			if err := tx.InsertEntry(ctx, r); err != nil {
				return err
			}
		}
		return nil
	}))
	slices.SortFunc(all, func(a, b ledger.Record) int { return compareStrings(a.ID, b.ID) })

	bounds := append([]string{""}, oddIDs...)
	bounds = append(bounds, "a|\xff", "\xff|")
	require.NoError(t, s.View(ctx, func(tx ledger.ReadTx) error {
		for _, u := range append([]string{""}, users...) {
			for _, a := range append([]string{""}, auths...) {
				for _, items := range []bool{false, true} {
					for _, start := range bounds {
						for _, end := range bounds {
							for _, rev := range []bool{false, true} {
								sc := ledger.Scan{UserID: u, AuthorityID: a, ItemsOnly: items, Start: start, End: end, Reverse: rev}
								var want []string
								for _, r := range all {
									if (u == "" || r.UserID == u) && (a == "" || r.AuthorityID == a) && (!items || r.Item != nil) &&
										(start == "" || r.ID >= start) && (end == "" || r.ID < end) {
										want = append(want, r.ID)
									}
								}
								if rev {
									slices.Reverse(want)
								}
								var got []string
								for r, err := range tx.Entries(ctx, sc) {
									require.NoError(t, err)
									got = append(got, r.ID)
								}
								require.Equalf(t, want, got, "scan %+q", sc)
							}
						}
					}
				}
			}
		}
		return nil
	}))
}

// TestInsertRefusesIDBelowHexDigits: the by-user index tells an ID from
// a currency by its first byte, so an ID must start as the ledger's do.
func TestInsertRefusesIDBelowHexDigits(t *testing.T) {
	ctx := context.Background()
	s := open(t, "", badgerstore.WithInMemory())
	for _, id := range []string{"", "\x00", "\x05abc", "/"} {
		err := s.Update(ctx, func(tx ledger.Tx) error {
			return tx.InsertEntry(ctx, ledger.Record{Entry: ledger.Entry{ID: id, UserID: "u", AuthorityID: "a"}})
		})
		require.ErrorContains(t, err, "badgerstore:", "ID %q", id)
	}
}

func compareStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func TestTotalsOddUsers(t *testing.T) {
	ctx := context.Background()
	s := open(t, "", badgerstore.WithInMemory())
	users := []string{"", "\x00", "u", "u\x00", "u1", "u\xff", "\xff"}
	require.NoError(t, s.Update(ctx, func(tx ledger.Tx) error {
		for i, u := range users {
			for _, a := range []string{"", "a", "ab", "\xff"} {
				if err := tx.SetTotal(ctx, ledger.TotalKey{AuthorityID: a, UserID: u}, ledger.Total{Value: decimal.NewFromInt(int64(i))}); err != nil {
					return err
				}
			}
		}
		return nil
	}))
	sorted := slices.Sorted(slices.Values(users))
	require.NoError(t, s.View(ctx, func(tx ledger.ReadTx) error {
		for _, a := range []string{"", "a", "ab", "\xff"} {
			for _, after := range append([]string{""}, users...) {
				var want, got []string
				for _, u := range sorted {
					if after == "" || u > after {
						want = append(want, u)
					}
				}
				for row, err := range tx.Totals(ctx, a, "", after) {
					require.NoError(t, err)
					require.Equal(t, fmt.Sprint(slices.Index(users, row.UserID)), row.Value.String())
					got = append(got, row.UserID)
				}
				require.Equalf(t, want, got, "authority %q after %q", a, after)
			}
			for i, u := range users {
				v, ok, err := tx.Total(ctx, ledger.TotalKey{AuthorityID: a, UserID: u})
				require.NoError(t, err)
				require.True(t, ok)
				require.Equal(t, fmt.Sprint(i), v.Value.String())
			}
			_, ok, err := tx.Total(ctx, ledger.TotalKey{AuthorityID: a, UserID: "nobody"})
			require.NoError(t, err)
			require.False(t, ok)
		}
		return nil
	}))
}

// A scan abandoned mid-way through iter.Pull, without stop, leaves a
// Badger iterator open, on which Badger panics when the transaction
// ends; the store closes it and later reads fail with an error.
func TestAbandonedScan(t *testing.T) {
	ctx := context.Background()
	s := open(t, "", badgerstore.WithInMemory())
	require.NoError(t, s.Update(ctx, func(tx ledger.Tx) error {
		for i := range 3 {
			if err := tx.InsertEntry(ctx, ledger.Record{Entry: ledger.Entry{ID: fmt.Sprint(i), UserID: "u"}}); err != nil {
				return err
			}
		}
		return nil
	}))
	var nexts []func() (ledger.Record, error, bool)
	var kept []ledger.Tx
	for _, update := range []bool{false, true} {
		fn := func(tx ledger.ReadTx) error {
			for _, sc := range []ledger.Scan{{}, {UserID: "u", Reverse: true}} {
				next, _ := iter.Pull2(tx.Entries(ctx, sc))
				_, err, ok := next()
				require.NoError(t, err)
				require.True(t, ok)
				nexts = append(nexts, next)
			}
			return nil
		}
		require.NotPanics(t, func() {
			if update {
				require.NoError(t, s.Update(ctx, func(tx ledger.Tx) error { kept = append(kept, tx); return fn(tx) }))
			} else {
				require.NoError(t, s.View(ctx, fn))
			}
		})
	}
	for _, next := range nexts {
		_, err, ok := next()
		require.ErrorContains(t, err, "badgerstore:")
		require.True(t, ok)
	}
	// So does any use of a transaction after its function returned.
	for _, tx := range kept {
		_, err := tx.Entry(ctx, "0")
		require.ErrorContains(t, err, "badgerstore:")
		require.ErrorContains(t, tx.SetTotal(ctx, ledger.TotalKey{AuthorityID: "", UserID: "u"}, ledger.Total{Value: decimal.Zero}), "badgerstore:")
		for _, err := range tx.Entries(ctx, ledger.Scan{}) {
			require.ErrorContains(t, err, "badgerstore:")
		}
	}
}

func TestInsertEntryRefusesDuplicates(t *testing.T) {
	ctx := context.Background()
	s := open(t, "", badgerstore.WithInMemory())
	orig := ledger.Record{Entry: ledger.Entry{ID: "1", UserID: "u", AuthorityID: "a"}, IdempotencyKey: "k"}
	require.NoError(t, s.Update(ctx, func(tx ledger.Tx) error { return tx.InsertEntry(ctx, orig) }))
	for _, r := range []ledger.Record{
		{Entry: ledger.Entry{ID: "1", UserID: "v", AuthorityID: "b"}},
		{Entry: ledger.Entry{ID: "2", UserID: "v", AuthorityID: "a", Item: &ledger.Item{}}, IdempotencyKey: "k"},
	} {
		err := s.Update(ctx, func(tx ledger.Tx) error {
			err := tx.InsertEntry(ctx, r)
			require.ErrorContains(t, err, "badgerstore:")
			return nil // commit: the refused insert must have written nothing
		})
		require.NoError(t, err)
	}
	require.NoError(t, s.View(ctx, func(tx ledger.ReadTx) error {
		for _, sc := range []ledger.Scan{{}, {UserID: "v"}, {AuthorityID: "b"}, {ItemsOnly: true}} {
			var ids []string
			for r, err := range tx.Entries(ctx, sc) {
				require.NoError(t, err)
				ids = append(ids, r.ID)
			}
			want := []string{"1"}
			if sc.UserID != "" || sc.AuthorityID != "" || sc.ItemsOnly {
				want = nil
			}
			require.Equalf(t, want, ids, "scan %+v", sc)
		}
		r, err := tx.EntryByIdempotencyKey(ctx, "a", "k")
		require.NoError(t, err)
		require.Equal(t, "1", r.ID)
		require.Equal(t, "u", r.UserID)
		_, err = tx.Entry(ctx, "2")
		require.ErrorIs(t, err, ledger.ErrNotFound)
		return nil
	}))
}

// TestUserTotalsAfterReadThenWrite writes wallet totals as the ledger
// does, reading each first, and finds every currency in UserTotals once.
func TestUserTotalsAfterReadThenWrite(t *testing.T) {
	ctx := context.Background()
	s := open(t, "", badgerstore.WithInMemory())
	for n := range 3 {
		for _, cur := range []string{"gems", "", "coins"} {
			require.NoError(t, s.Update(ctx, func(tx ledger.Tx) error {
				k := ledger.TotalKey{UserID: "u", Currency: cur}
				v, _, err := tx.Total(ctx, k)
				if err != nil {
					return err
				}
				return tx.SetTotal(ctx, k, ledger.Total{Value: v.Value.Add(decimal.NewFromInt(int64(n + 1)))})
			}))
		}
	}
	require.NoError(t, s.View(ctx, func(tx ledger.ReadTx) error {
		var got []string
		for r, err := range tx.UserTotals(ctx, "u") {
			require.NoError(t, err)
			got = append(got, r.Currency+"="+r.Value.String())
		}
		require.Equal(t, []string{"=6", "coins=6", "gems=6"}, got)
		return nil
	}))
}

// A View's transaction is read-only: a caller that asserts it to a
// ledger.Tx and writes gets an error, not a panic, and nothing is
// written.
func TestViewRefusesWrites(t *testing.T) {
	ctx := context.Background()
	s := open(t, "", badgerstore.WithInMemory())
	rec := ledger.Record{Entry: ledger.Entry{ID: "0123456789abcdef01234567", UserID: "u", AuthorityID: "a", Amount: decimal.NewFromInt(1)}}
	tk := ledger.TotalKey{UserID: "u"}
	writes := map[string]func(ledger.Tx) error{
		"InsertEntry": func(tx ledger.Tx) error { return tx.InsertEntry(ctx, rec) },
		"SetTotal":    func(tx ledger.Tx) error { return tx.SetTotal(ctx, tk, ledger.Total{Value: decimal.NewFromInt(1)}) },
		"SetLimits": func(tx ledger.Tx) error {
			return tx.SetLimits(ctx, ledger.StoredLimits{WalletLimits: ledger.WalletLimits{UserID: "u"}})
		},
		"AppendChange": func(tx ledger.Tx) error {
			return tx.AppendChange(ctx, ledger.ChangeRecord{Kind: ledger.ChangeEntry, Ref: rec.ID})
		},
	}
	for name, write := range writes {
		err := s.View(ctx, func(rtx ledger.ReadTx) error {
			tx, ok := rtx.(ledger.Tx)
			require.True(t, ok, "a View's transaction is the Update's type")
			return write(tx)
		})
		require.ErrorContains(t, err, "read-only", name)
	}
	err := s.View(ctx, func(tx ledger.ReadTx) error {
		_, err := tx.Entry(ctx, rec.ID)
		require.ErrorIs(t, err, ledger.ErrNotFound)
		_, ok, err := tx.Total(ctx, tk)
		require.NoError(t, err)
		require.False(t, ok)
		return nil
	})
	require.NoError(t, err)
}
