package memstore_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"
	"github.com/stretchr/testify/require"

	"github.com/walletledger/ledger"
	"github.com/walletledger/ledger/memstore"
)

var errRollback = errors.New("roll back")

// rec makes a record numbered n (which orders it) in the wallet (user,
// currency) of authority "a".
func rec(n int, user, currency string) ledger.Record {
	nanos := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano() + int64(n)*int64(time.Millisecond)
	return ledger.Record{Entry: ledger.Entry{
		ID: ledger.FormatEntryID(nanos, 0), AuthorityID: "a", UserID: user, Currency: currency,
		CreatedOn: time.Unix(0, nanos).UTC(), Amount: decimal.NewFromInt(int64(n)), Reason: "r",
	}}
}

func insert(t *testing.T, s *memstore.Store, fail bool, rs ...ledger.Record) {
	t.Helper()
	err := s.Update(context.Background(), func(tx ledger.Tx) error {
		for _, r := range rs {
			if err := tx.InsertEntry(context.Background(), r); err != nil {
				return err
			}
		}
		if fail {
			return errRollback
		}
		return nil
	})
	if fail {
		require.ErrorIs(t, err, errRollback)
	} else {
		require.NoError(t, err)
	}
}

func scan(t *testing.T, s *memstore.Store, sc ledger.Scan) []string {
	t.Helper()
	var out []string
	require.NoError(t, s.View(context.Background(), func(tx ledger.ReadTx) error {
		for r, err := range tx.Entries(context.Background(), sc) {
			if err != nil {
				return err
			}
			out = append(out, r.ID)
		}
		return nil
	}))
	return out
}

func idsOf(rs ...ledger.Record) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.ID)
	}
	return out
}

// A user's entries are served by the wallet's index while the user has
// one wallet, and by the user's own once a second appears: every scan of
// the user must read the same before, during and after the switch, and
// after a rolled-back switch.
func TestUserScansAcrossWallets(t *testing.T) {
	s := memstore.New()
	defer s.Close()
	e1, e2, e3 := rec(1, "u", ""), rec(2, "u", ""), rec(3, "w", "")
	insert(t, s, false, e1, e2, e3)
	require.Equal(t, idsOf(e1, e2), scan(t, s, ledger.Scan{UserID: "u"}))

	// A second wallet whose only entry is rolled back: the user keeps
	// both wallets and must still read right.
	insert(t, s, true, rec(4, "u", "gems"))
	require.Equal(t, idsOf(e1, e2), scan(t, s, ledger.Scan{UserID: "u"}))
	require.Empty(t, scan(t, s, ledger.Scan{UserID: "u", InCurrency: true, Currency: "gems"}))

	e5, e6, e7 := rec(5, "u", "gems"), rec(6, "u", ""), rec(7, "u", "coins")
	insert(t, s, false, e5, e6, e7)
	// An insert rolled back from the user's index once it is kept.
	insert(t, s, true, rec(8, "u", ""), rec(9, "u", "gems"))

	for _, tc := range []struct {
		name string
		sc   ledger.Scan
		want []ledger.Record
	}{
		{"all", ledger.Scan{UserID: "u"}, []ledger.Record{e1, e2, e5, e6, e7}},
		{"reverse", ledger.Scan{UserID: "u", Reverse: true}, []ledger.Record{e7, e6, e5, e2, e1}},
		{"from e2 before e7", ledger.Scan{UserID: "u", Start: e2.ID, End: e7.ID}, []ledger.Record{e2, e5, e6}},
		{"default currency", ledger.Scan{UserID: "u", InCurrency: true}, []ledger.Record{e1, e2, e6}},
		{"default currency before e6, newest first", ledger.Scan{UserID: "u", InCurrency: true, End: e6.ID, Reverse: true}, []ledger.Record{e2, e1}},
		{"gems", ledger.Scan{UserID: "u", InCurrency: true, Currency: "gems"}, []ledger.Record{e5}},
		{"unknown currency", ledger.Scan{UserID: "u", InCurrency: true, Currency: "none"}, nil},
		{"authority, coins", ledger.Scan{AuthorityID: "a", InCurrency: true, Currency: "coins"}, []ledger.Record{e7}},
		{"everyone, default currency", ledger.Scan{InCurrency: true}, []ledger.Record{e1, e2, e3, e6}},
		{"other user", ledger.Scan{UserID: "w"}, []ledger.Record{e3}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, idsOf(tc.want...), scan(t, s, tc.sc))
		})
	}
}

// SetReversed and SetItemUsed in one rolled-back transaction leave the
// entry as it was, in either order.
func TestSetReversedRollsBack(t *testing.T) {
	ctx := context.Background()
	for _, reverseFirst := range []bool{false, true} {
		t.Run(fmt.Sprint("reverseFirst=", reverseFirst), func(t *testing.T) {
			s := memstore.New()
			defer s.Close()
			a := rec(1, "u", "gems")
			a.Item = &ledger.Item{Name: "sword"}
			a.TransferID = "t-1"
			a.Metadata = map[string]string{"order": "o-1"}
			big := rec(2, "u", "")
			big.Amount = decimal.RequireFromString("123456789012345678901234567890.5")
			insert(t, s, false, a, big)
			err := s.Update(ctx, func(tx ledger.Tx) error {
				steps := []func() error{
					func() error { return tx.SetReversed(ctx, a.ID, "rev", true) },
					func() error { return tx.SetItemUsed(ctx, a.ID, ledger.ItemUse{AuthorityID: "a"}) },
				}
				if !reverseFirst {
					steps[0], steps[1] = steps[1], steps[0]
				}
				for _, step := range steps {
					require.NoError(t, step())
				}
				require.NoError(t, tx.SetReversed(ctx, big.ID, "rev", false))
				got, err := tx.Entry(ctx, a.ID)
				require.NoError(t, err)
				require.Equal(t, "rev", got.ReversedBy, "reads see the transaction's writes")
				require.True(t, got.Item.Revoked && got.Item.Used)
				return errRollback
			})
			require.ErrorIs(t, err, errRollback)
			require.NoError(t, s.View(ctx, func(tx ledger.ReadTx) error {
				got, err := tx.Entry(ctx, a.ID)
				require.NoError(t, err)
				require.Equal(t, "", got.ReversedBy)
				require.False(t, got.Item.Revoked, "Revoked")
				require.False(t, got.Item.Used, "Used")
				require.Equal(t, "t-1", got.TransferID)
				require.Equal(t, a.Metadata, got.Metadata)
				got, err = tx.Entry(ctx, big.ID)
				require.NoError(t, err)
				require.Equal(t, "", got.ReversedBy)
				require.True(t, big.Amount.Equal(got.Amount), "got %s, want %s", got.Amount, big.Amount)
				return nil
			}))
		})
	}
}

// Metadata and limits' Cap, like the rest of a record, are copied in and
// out: scribbling over what was passed or returned changes nothing
// stored.
func TestReturnedWalletMemoryIsCallers(t *testing.T) {
	ctx := context.Background()
	s := memstore.New()
	defer s.Close()
	r := rec(1, "u", "")
	r.Metadata = map[string]string{"order": "o-1"}
	insert(t, s, false, r)
	r.Metadata["order"], r.Metadata["new"] = "changed", "x"
	c := decimal.NewFromInt(10)
	require.NoError(t, s.Update(ctx, func(tx ledger.Tx) error {
		return tx.SetLimits(ctx, ledger.StoredLimits{WalletLimits: ledger.WalletLimits{UserID: "u", Cap: &c}, SetBy: "a"})
	}))
	c = decimal.NewFromInt(99)
	for range 2 {
		require.NoError(t, s.View(ctx, func(tx ledger.ReadTx) error {
			got, err := tx.Entry(ctx, r.ID)
			require.NoError(t, err)
			require.Equal(t, map[string]string{"order": "o-1"}, got.Metadata)
			got.Metadata["order"] = "scribbled"
			l, ok, err := tx.Limits(ctx, "u", "")
			require.NoError(t, err)
			require.True(t, ok)
			require.Equal(t, "10", l.Cap.String())
			*l.Cap = decimal.NewFromInt(-1)
			for l := range tx.AllLimits(ctx) {
				*l.Cap = decimal.NewFromInt(-2)
			}
			return nil
		}))
	}
}

// Metadata comes back as given whatever its size: the store holds no
// rule about it, and lengths of 128 bytes and more pack in more than one
// byte.
func TestMetadataRoundTrip(t *testing.T) {
	ctx := context.Background()
	s := memstore.New()
	defer s.Close()
	for i, m := range []map[string]string{
		nil,
		{},
		{"k": ""},
		{"": "empty key"},
		{strings.Repeat("k", 300): strings.Repeat("v\x00é", 20000), "a": "b"},
	} {
		r := rec(i+1, "u", "")
		r.Metadata = m
		insert(t, s, false, r)
		require.NoError(t, s.View(ctx, func(tx ledger.ReadTx) error {
			got, err := tx.Entry(ctx, r.ID)
			require.NoError(t, err)
			if len(m) == 0 {
				require.Nil(t, got.Metadata, "empty metadata reads as nil")
			} else {
				require.Equal(t, m, got.Metadata)
			}
			return nil
		}))
	}
}

// BenchmarkMemoryPerLinkedEntry reports the heap a stored entry costs
// with a short metadata key and value and a transfer ID, as each entry
// of a transfer has (inserted directly, indexes included).
func BenchmarkMemoryPerLinkedEntry(b *testing.B) {
	const n = 100_000
	ctx := context.Background()
	reportHeapPerEntry(b, n, func(s *memstore.Store) io.Closer {
		for i := 0; i < n; i += 1000 {
			err := s.Update(ctx, func(tx ledger.Tx) error {
				for j := i; j < i+1000; j++ {
					r := rec(j, users[j%1000], "")
					r.AuthorityID = authorities[j%3]
					r.Metadata = map[string]string{"order": fmt.Sprintf("o-%08d", j)}
					r.TransferID = fmt.Sprintf("%024x", j/2)
					if err := tx.InsertEntry(ctx, r); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				b.Fatal(err)
			}
		}
		return s
	})
}
