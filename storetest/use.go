package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/walletledger/ledger"
)

// runUse checks what an item use records, and UseItem's options.
func runUse(t *testing.T, ns NewStore) {
	t.Run("RecordsTheUse", func(t *testing.T) { testUseRecorded(t, ns) })
	t.Run("ForUser", func(t *testing.T) { testForUser(t, ns) })
	t.Run("IdempotencyKey", func(t *testing.T) { testUseIdempotencyKey(t, ns) })
	t.Run("InvalidOptions", func(t *testing.T) { testUseInvalidOptions(t, ns) })
	t.Run("ExportImport", func(t *testing.T) { testUseExportImport(t, ns) })
	t.Run("RacingKeyedUses", func(t *testing.T) { testRacingKeyedUses(t, ns) })
}

// storedRecord reads an entry's record under the ledger.
func storedRecord(t *testing.T, s ledger.Store, id string) ledger.Record {
	t.Helper()
	var r ledger.Record
	view(t, s, func(tx ledger.ReadTx) {
		var err error
		r, err = tx.Entry(context.Background(), id)
		require.NoError(t, err)
	})
	return r
}

func entryByID(t *testing.T, l *ledger.Ledger, id string) ledger.Entry {
	t.Helper()
	es, err := l.Entries(context.Background(), ledger.EntryQuery{EntryIDs: []string{id}})
	require.NoError(t, err)
	require.Len(t, es, 1)
	return es[0]
}

func testUseRecorded(t *testing.T, ns NewStore) {
	ctx := context.Background()
	// A clock in another zone, with nanoseconds: UsedOn comes back in
	// UTC, to the nanosecond.
	clk := newClock()
	clk.now = time.Date(2026, 6, 1, 12, 0, 0, 123456789, time.FixedZone("X", 5*3600))
	l, s := newLedger(t, ns, ledger.WithClock(clk.Now))
	e := create(t, l, "shop", "u", "0", &ledger.Item{Name: "ticket"})
	require.False(t, e.Item.Used)
	require.True(t, e.Item.UsedOn.IsZero(), "an unused item has no use time")
	require.Empty(t, e.Item.UsedBy)

	used, err := l.UseItem(ctx, "arcade", e.ID)
	require.NoError(t, err)
	want := time.Date(2026, 6, 1, 7, 0, 2, 123456789, time.UTC) // the clock's next reading, in UTC
	require.Equal(t, want, used.Item.UsedOn, "UsedOn is the clock's reading at the use")
	require.Equal(t, "arcade", used.Item.UsedBy, "UsedBy is the authority that used the item")
	require.Equal(t, e.CreatedOn, used.CreatedOn, "a use changes no other field")

	requireSameEntry(t, used, entryByID(t, l, e.ID))
	require.Equal(t, used.Item.UsedOn, entryByID(t, l, e.ID).Item.UsedOn)
	inv, err := l.Inventory(ctx, ledger.InventoryQuery{Used: ledger.UsedOnly})
	require.NoError(t, err)
	require.Len(t, inv, 1)
	require.Equal(t, *used.Item, inv[0].Item)
	r := storedRecord(t, s, e.ID)
	require.Empty(t, r.UseIdempotencyKey, "a use without a key stores none")

	// A failed use records nothing.
	_, err = l.UseItem(ctx, "other", e.ID)
	require.ErrorIs(t, err, ledger.ErrItemUsed)
	require.Equal(t, *used.Item, *entryByID(t, l, e.ID).Item, "the first use stays recorded")

	// A new entry's item cannot come with a use.
	for _, it := range []*ledger.Item{
		{Name: "x", UsedOn: want},
		{Name: "x", UsedBy: "arcade"},
	} {
		_, err := l.CreateEntry(ctx, ledger.NewEntry{AuthorityID: "shop", UserID: "u", Amount: dec("0"), Reason: "r", Item: it})
		var ie *ledger.InvalidError
		require.ErrorAs(t, err, &ie)
		require.Contains(t, []string{"Item.UsedOn", "Item.UsedBy"}, ie.Field)
	}
}

func testForUser(t *testing.T, ns NewStore) {
	ctx := context.Background()
	l, _ := newLedger(t, ns)
	mine := create(t, l, "shop", "alice", "0", &ledger.Item{Name: "alice's"})
	theirs := create(t, l, "shop", "bob", "0", &ledger.Item{Name: "bob's"})
	plain := create(t, l, "shop", "bob", "0", nil)

	_, err := l.UseItem(ctx, "shop", theirs.ID, ledger.ForUser("alice"))
	require.ErrorIs(t, err, ledger.ErrNotFound, "another user's entry is not found")
	_, missing := l.UseItem(ctx, "shop", "000000000000000000000001", ledger.ForUser("alice"))
	require.ErrorIs(t, missing, ledger.ErrNotFound)
	require.Equal(t, strings.ReplaceAll(missing.Error(), "000000000000000000000001", theirs.ID), err.Error(),
		"the error says no more than for an entry that does not exist")
	require.False(t, entryByID(t, l, theirs.ID).Item.Used, "nothing was written")

	// Not found comes before no item and item used.
	_, err = l.UseItem(ctx, "shop", plain.ID, ledger.ForUser("alice"))
	require.ErrorIs(t, err, ledger.ErrNotFound)
	_, err = l.UseItem(ctx, "shop", theirs.ID, ledger.ForUser("bob"))
	require.NoError(t, err)
	_, err = l.UseItem(ctx, "shop", theirs.ID, ledger.ForUser("alice"))
	require.ErrorIs(t, err, ledger.ErrNotFound, "a used item of another user is not found either")

	used, err := l.UseItem(ctx, "shop", mine.ID, ledger.ForUser("alice"))
	require.NoError(t, err)
	require.True(t, used.Item.Used)
	_, err = l.UseItem(ctx, "shop", mine.ID, ledger.ForUser("alice"))
	require.ErrorIs(t, err, ledger.ErrItemUsed)

	// Under grantor-only use, not found comes before forbidden.
	g, _ := newLedger(t, ns, ledger.WithGrantorOnlyItemUse())
	e := create(t, g, "shop", "bob", "0", &ledger.Item{Name: "ticket"})
	_, err = g.UseItem(ctx, "other", e.ID, ledger.ForUser("alice"))
	require.ErrorIs(t, err, ledger.ErrNotFound)
	_, err = g.UseItem(ctx, "other", e.ID, ledger.ForUser("bob"))
	require.ErrorIs(t, err, ledger.ErrForbidden)
	_, err = g.UseItem(ctx, "shop", e.ID, ledger.ForUser("bob"), ledger.ForUser("alice"))
	require.ErrorIs(t, err, ledger.ErrNotFound, "the last ForUser wins")
	_, err = g.UseItem(ctx, "shop", e.ID, ledger.ForUser("alice"), ledger.ForUser("bob"))
	require.NoError(t, err)
}

func testUseIdempotencyKey(t *testing.T, ns NewStore) {
	ctx := context.Background()
	clk := newClock()
	l, s := newLedger(t, ns, ledger.WithClock(clk.Now))
	e := create(t, l, "shop", "u", "0", &ledger.Item{Name: "ticket"})
	other := create(t, l, "shop", "u", "0", &ledger.Item{Name: "other"})
	keyless := create(t, l, "shop", "u", "0", &ledger.Item{Name: "keyless"})
	plain := create(t, l, "shop", "u", "0", nil)

	first, err := l.UseItem(ctx, "arcade", e.ID, ledger.UseIdempotencyKey("use-1"))
	require.NoError(t, err)
	r := storedRecord(t, s, e.ID)
	require.Equal(t, "use-1", r.UseIdempotencyKey, "the store keeps the use's key")
	require.Empty(t, r.IdempotencyKey, "apart from the entry's own")

	for _, tc := range []struct {
		name string
		auth string
		opts []ledger.UseOption
		want error
	}{
		{"same key", "arcade", []ledger.UseOption{ledger.UseIdempotencyKey("use-1")}, nil},
		{"same key, for the owner", "arcade", []ledger.UseOption{ledger.ForUser("u"), ledger.UseIdempotencyKey("use-1")}, nil},
		{"same key, for another user", "arcade", []ledger.UseOption{ledger.ForUser("v"), ledger.UseIdempotencyKey("use-1")}, ledger.ErrNotFound},
		{"different key", "arcade", []ledger.UseOption{ledger.UseIdempotencyKey("use-2")}, ledger.ErrItemUsed},
		{"no key", "arcade", nil, ledger.ErrItemUsed},
		{"same key, another authority", "shop", []ledger.UseOption{ledger.UseIdempotencyKey("use-1")}, ledger.ErrItemUsed},
		{"same key, then a different one", "arcade", []ledger.UseOption{ledger.UseIdempotencyKey("use-1"), ledger.UseIdempotencyKey("x")}, ledger.ErrItemUsed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := l.UseItem(ctx, tc.auth, e.ID, tc.opts...)
			if tc.want != nil {
				require.ErrorIs(t, err, tc.want)
				return
			}
			require.NoError(t, err, "a retry with the use's key succeeds")
			requireSameEntry(t, first, got)
			require.Equal(t, first.Item.UsedOn, got.Item.UsedOn, "a retry returns the first use's time")
		})
	}
	require.Equal(t, first.Item.UsedOn, entryByID(t, l, e.ID).Item.UsedOn, "retries write nothing")

	// A key says nothing about other entries: the same key uses another
	// item, and a retry there returns that one.
	o, err := l.UseItem(ctx, "arcade", other.ID, ledger.UseIdempotencyKey("use-1"))
	require.NoError(t, err)
	require.Equal(t, other.ID, o.ID)
	require.True(t, o.Item.Used)
	o2, err := l.UseItem(ctx, "arcade", other.ID, ledger.UseIdempotencyKey("use-1"))
	require.NoError(t, err)
	requireSameEntry(t, o, o2)

	// A use made without a key has no retry.
	_, err = l.UseItem(ctx, "arcade", keyless.ID)
	require.NoError(t, err)
	_, err = l.UseItem(ctx, "arcade", keyless.ID, ledger.UseIdempotencyKey("use-1"))
	require.ErrorIs(t, err, ledger.ErrItemUsed)

	// No item comes before the key.
	_, err = l.UseItem(ctx, "arcade", plain.ID, ledger.UseIdempotencyKey("use-1"))
	require.ErrorIs(t, err, ledger.ErrNoItem)
	// A key that was an entry's idempotency key is no use's.
	keyed, err := l.CreateEntry(ctx, ledger.NewEntry{
		AuthorityID: "arcade", UserID: "u", Amount: dec("0"), Reason: "r", Item: &ledger.Item{Name: "k"}, IdempotencyKey: "grant-1",
	})
	require.NoError(t, err)
	_, err = l.UseItem(ctx, "arcade", keyed.ID)
	require.NoError(t, err)
	_, err = l.UseItem(ctx, "arcade", keyed.ID, ledger.UseIdempotencyKey("grant-1"))
	require.ErrorIs(t, err, ledger.ErrItemUsed)
	// An idempotent CreateEntry retry returns the entry with its use.
	again, err := l.CreateEntry(ctx, ledger.NewEntry{
		AuthorityID: "arcade", UserID: "u", Amount: dec("0"), Reason: "r", Item: &ledger.Item{Name: "k"}, IdempotencyKey: "grant-1",
	})
	require.NoError(t, err)
	require.True(t, again.Item.Used)
	require.Equal(t, "arcade", again.Item.UsedBy)
	require.False(t, again.Item.UsedOn.IsZero())
	require.NoError(t, l.Verify(ctx))
}

func testUseInvalidOptions(t *testing.T, ns NewStore) {
	ctx := context.Background()
	l, _ := newLedger(t, ns)
	e := create(t, l, "shop", "u", "0", &ledger.Item{Name: "ticket"})
	long := strings.Repeat("k", ledger.DefaultLimits().MaxIDBytes+1)
	for _, tc := range []struct {
		name  string
		opt   ledger.UseOption
		field string
	}{
		{"empty user", ledger.ForUser(""), "UserID"},
		{"long user", ledger.ForUser(long), "UserID"},
		{"user not UTF-8", ledger.ForUser("\xff"), "UserID"},
		{"empty key", ledger.UseIdempotencyKey(""), "IdempotencyKey"},
		{"long key", ledger.UseIdempotencyKey(long), "IdempotencyKey"},
		{"key not UTF-8", ledger.UseIdempotencyKey("\xff"), "IdempotencyKey"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := l.UseItem(ctx, "shop", e.ID, tc.opt)
			var ie *ledger.InvalidError
			require.ErrorAs(t, err, &ie)
			require.ErrorIs(t, err, ledger.ErrInvalid)
			require.Equal(t, tc.field, ie.Field)
		})
	}
	require.False(t, entryByID(t, l, e.ID).Item.Used, "an invalid call writes nothing")
	used, err := l.UseItem(ctx, "shop", e.ID, nil, ledger.UseIdempotencyKey("k"), nil)
	require.NoError(t, err, "a nil option does nothing")
	require.True(t, used.Item.Used)

	require.NoError(t, l.Close())
	_, err = l.UseItem(ctx, "shop", e.ID, ledger.ForUser(""), ledger.UseIdempotencyKey(""))
	require.ErrorIs(t, err, ledger.ErrClosed, "closed comes before validation")
}

func testUseExportImport(t *testing.T, ns NewStore) {
	ctx := context.Background()
	clk := newClock()
	l, _ := newLedger(t, ns, ledger.WithClock(clk.Now))
	a := create(t, l, "shop", "u", "0", &ledger.Item{Name: "a"})
	b := create(t, l, "shop", "u", "0", &ledger.Item{Name: "b"})
	create(t, l, "shop", "u", "0", &ledger.Item{Name: "unused"})
	ua, err := l.UseItem(ctx, "arcade", a.ID, ledger.UseIdempotencyKey("use-a"))
	require.NoError(t, err)
	_, err = l.UseItem(ctx, "shop", b.ID)
	require.NoError(t, err)
	before, err := l.Entries(ctx, ledger.EntryQuery{})
	require.NoError(t, err)

	var out bytes.Buffer
	require.NoError(t, l.Export(ctx, &out))
	m, s := newLedger(t, ns)
	require.NoError(t, ledger.Import(ctx, m, bytes.NewReader(out.Bytes())))
	after, err := m.Entries(ctx, ledger.EntryQuery{})
	require.NoError(t, err)
	require.Equal(t, before, after, "the uses travel with the export")
	require.Equal(t, "use-a", storedRecord(t, s, a.ID).UseIdempotencyKey)
	again, err := m.UseItem(ctx, "arcade", a.ID, ledger.UseIdempotencyKey("use-a"))
	require.NoError(t, err, "and so does the use's key")
	require.Equal(t, ua, again)
}

// testRacingKeyedUses: retries racing with one key all get the used
// entry; uses racing with different keys get one winner.
func testRacingKeyedUses(t *testing.T, ns NewStore) {
	ctx := context.Background()
	l, _ := newLedger(t, ns)
	const n = 16
	for round := range 3 {
		e := create(t, l, "shop", "u", "0", &ledger.Item{Name: fmt.Sprint("same key ", round)})
		got := make([]ledger.Entry, n)
		errs := make([]error, n)
		parallel(n, func(i int) {
			got[i], errs[i] = l.UseItem(ctx, "arcade", e.ID, ledger.UseIdempotencyKey("retry"))
		})
		for i := range n {
			require.NoError(t, errs[i], "every retry with the same key succeeds")
			requireSameEntry(t, got[0], got[i])
			require.Equal(t, got[0].Item.UsedOn, got[i].Item.UsedOn, "with one use time")
		}
		require.True(t, got[0].Item.Used)

		e = create(t, l, "shop", "u", "0", &ledger.Item{Name: fmt.Sprint("different keys ", round)})
		var won, lost atomic.Int64
		parallel(n, func(i int) {
			_, err := l.UseItem(ctx, "arcade", e.ID, ledger.UseIdempotencyKey(fmt.Sprint("key-", i)))
			switch {
			case err == nil:
				won.Add(1)
			case errors.Is(err, ledger.ErrItemUsed):
				lost.Add(1)
			default:
				t.Error(err)
			}
		})
		require.Equal(t, int64(1), won.Load(), "exactly one key wins")
		require.Equal(t, int64(n-1), lost.Load())
	}
	require.NoError(t, l.Verify(ctx))
}
