package storetest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/walletledger/ledger"
)

// runRules checks the wallet rules of the original service through a
// ledger over the store.
func runRules(t *testing.T, ns NewStore) {
	t.Run("Funds", func(t *testing.T) { testFunds(t, ns) })
	t.Run("Wallets", func(t *testing.T) { testWallets(t, ns) })
	t.Run("WalletPaging", func(t *testing.T) { testWalletPaging(t, ns) })
	t.Run("Inventory", func(t *testing.T) { testInventory(t, ns) })
	t.Run("ItemData", func(t *testing.T) { testItemData(t, ns) })
	t.Run("UseItem", func(t *testing.T) { testUseItem(t, ns) })
	t.Run("GrantorOnlyItemUse", func(t *testing.T) { testGrantorOnly(t, ns) })
	t.Run("EntryIDs", func(t *testing.T) { testEntryIDs(t, ns) })
	t.Run("Reopen", func(t *testing.T) { testNewLedgerContinuesIDs(t, ns) })
	t.Run("ClockSkew", func(t *testing.T) { testClockSkew(t, ns) })
}

// create writes an entry that must succeed.
func create(t *testing.T, l *ledger.Ledger, auth, user, amount string, item *ledger.Item) ledger.Entry {
	t.Helper()
	e, err := l.CreateEntry(context.Background(), ledger.NewEntry{
		AuthorityID: auth, UserID: user, Amount: dec(amount), Reason: "test " + amount, Item: item,
	})
	require.NoError(t, err)
	return e
}

// totals returns the ledger's wallets as user -> total strings.
func totals(t *testing.T, l *ledger.Ledger, q ledger.WalletQuery) []string {
	t.Helper()
	ws, err := l.Wallets(context.Background(), q)
	require.NoError(t, err)
	out := []string{}
	for _, w := range ws {
		out = append(out, w.UserID+"="+w.Total.String())
	}
	return out
}

func entryCount(t *testing.T, l *ledger.Ledger) int {
	t.Helper()
	es, err := l.Entries(context.Background(), ledger.EntryQuery{})
	require.NoError(t, err)
	return len(es)
}

func testFunds(t *testing.T, ns NewStore) {
	ctx := context.Background()
	l, _ := newLedger(t, ns)

	e := create(t, l, "bank", "alice", "10", nil)
	requireDecimal(t, "10", e.Balance, "Balance after a credit")
	e = create(t, l, "shop", "alice", "-10", nil)
	requireDecimal(t, "0", e.Balance, "spending to exactly zero is allowed")

	create(t, l, "bank", "alice", "3.5", nil)
	_, err := l.CreateEntry(ctx, ledger.NewEntry{AuthorityID: "shop", UserID: "alice", Amount: dec("-3.50000001"), Reason: "too much"})
	require.ErrorIs(t, err, ledger.ErrNotEnoughFunds)
	var nef *ledger.NotEnoughFundsError
	require.ErrorAs(t, err, &nef)
	require.Equal(t, "alice", nef.UserID)
	requireDecimal(t, "3.5", nef.Balance)
	requireDecimal(t, "-3.50000001", nef.Amount)
	require.Equal(t, []string{"alice=3.5"}, totals(t, l, ledger.WalletQuery{}), "a refused spend writes nothing")
	require.Equal(t, 3, entryCount(t, l), "a refused spend writes no entry")

	// The original server crashed on a spend from a user with no entries.
	_, err = l.CreateEntry(ctx, ledger.NewEntry{AuthorityID: "shop", UserID: "nobody", Amount: dec("-1"), Reason: "soda"})
	require.ErrorAs(t, err, &nef)
	requireDecimal(t, "0", nef.Balance)
	require.Equal(t, []string{"nobody=0"}, totals(t, l, ledger.WalletQuery{UserIDs: []string{"nobody"}}))

	// Zero and positive amounts are never refused, even for a new user.
	create(t, l, "shop", "bob", "0", &ledger.Item{Name: "free sample"})
	create(t, l, "shop", "carol", "0.00000001", nil)

	// Funds count over all authorities: the shop may take what the bank gave.
	create(t, l, "bank", "dave", "5", nil)
	create(t, l, "shop", "dave", "-5", nil)
	require.Equal(t, []string{"dave=-5"}, totals(t, l, ledger.WalletQuery{UserIDs: []string{"dave"}, AuthorityIDs: []string{"shop"}}))
	require.Equal(t, []string{"dave=0"}, totals(t, l, ledger.WalletQuery{UserIDs: []string{"dave"}}))
}

func testWallets(t *testing.T, ns NewStore) {
	l, _ := newLedger(t, ns)
	create(t, l, "a1", "u3", "30", nil)
	create(t, l, "a1", "u1", "10", nil)
	create(t, l, "a2", "u1", "1.25", nil)
	create(t, l, "a2", "u2", "20", nil)
	create(t, l, "a3", "u2", "-20", nil)
	create(t, l, "a3", "u4", "0", nil)

	for _, tc := range []struct {
		name string
		q    ledger.WalletQuery
		want []string
	}{
		{"all users sorted", ledger.WalletQuery{}, []string{"u1=11.25", "u2=0", "u3=30", "u4=0"}},
		{"one authority", ledger.WalletQuery{AuthorityIDs: []string{"a1"}}, []string{"u1=10", "u3=30"}},
		{"two authorities", ledger.WalletQuery{AuthorityIDs: []string{"a2", "a1"}}, []string{"u1=11.25", "u2=20", "u3=30"}},
		{"authority with a negative total", ledger.WalletQuery{AuthorityIDs: []string{"a3"}}, []string{"u2=-20", "u4=0"}},
		{"unknown authority", ledger.WalletQuery{AuthorityIDs: []string{"nobody"}}, []string{}},
		{"named users, one row each, sorted", ledger.WalletQuery{UserIDs: []string{"u3", "u1", "u3", "zed"}}, []string{"u1=11.25", "u3=30", "zed=0"}},
		{"named users and authority", ledger.WalletQuery{UserIDs: []string{"u2", "u3"}, AuthorityIDs: []string{"a1"}}, []string{"u2=0", "u3=30"}},
		{"after", ledger.WalletQuery{After: "u1"}, []string{"u2=0", "u3=30", "u4=0"}},
		{"after a prefix", ledger.WalletQuery{After: "u"}, []string{"u1=11.25", "u2=0", "u3=30", "u4=0"}},
		{"limit", ledger.WalletQuery{Limit: 2}, []string{"u1=11.25", "u2=0"}},
		{"after and limit with names", ledger.WalletQuery{UserIDs: []string{"u1", "u2", "u3"}, After: "u1", Limit: 1}, []string{"u2=0"}},
		{"after and limit with authorities", ledger.WalletQuery{AuthorityIDs: []string{"a1", "a2"}, After: "u1", Limit: 1}, []string{"u2=20"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, totals(t, l, tc.q))
		})
	}
}

// testWalletPaging walks every page size over every filter and checks the
// pages add up to the unpaged answer.
func testWalletPaging(t *testing.T, ns NewStore) {
	l, _ := newLedger(t, ns)
	for i := range 23 {
		create(t, l, fmt.Sprintf("a%d", i%3), fmt.Sprintf("user-%02d", i%17), fmt.Sprint(i+1), nil)
	}
	for _, q := range []ledger.WalletQuery{
		{},
		{AuthorityIDs: []string{"a0", "a2"}},
		{UserIDs: []string{"user-03", "user-01", "nobody", "user-16"}},
	} {
		all := totals(t, l, q)
		for limit := 1; limit <= len(all)+1; limit++ {
			var pages []string
			p := q
			p.Limit = limit
			for {
				ws, err := l.Wallets(context.Background(), p)
				require.NoError(t, err)
				require.LessOrEqual(t, len(ws), limit)
				for _, w := range ws {
					pages = append(pages, w.UserID+"="+w.Total.String())
				}
				if len(ws) < limit {
					break
				}
				p.After = ws[len(ws)-1].UserID
			}
			require.Equal(t, all, pages, "query %+v, limit %d", q, limit)
		}
	}
}

func inventory(t *testing.T, l *ledger.Ledger, q ledger.InventoryQuery) []string {
	t.Helper()
	items, err := l.Inventory(context.Background(), q)
	require.NoError(t, err)
	out := []string{}
	for _, it := range items {
		out = append(out, it.Item.Name)
	}
	return out
}

func testInventory(t *testing.T, ns NewStore) {
	ctx := context.Background()
	l, _ := newLedger(t, ns)
	create(t, l, "a1", "u1", "100", nil)
	create(t, l, "a1", "u2", "100", nil)
	e1 := create(t, l, "a1", "u1", "-1", &ledger.Item{Name: "i1"})
	e2 := create(t, l, "a2", "u1", "-1", &ledger.Item{Name: "i2"})
	e3 := create(t, l, "a1", "u2", "-1", &ledger.Item{Name: "i3"})
	e4 := create(t, l, "a2", "u2", "0", &ledger.Item{Name: "i4"})
	noItem := create(t, l, "a2", "u2", "1", nil)
	used2, err := l.UseItem(ctx, "a1", e2.ID)
	require.NoError(t, err)
	_, err = l.UseItem(ctx, "a2", e3.ID)
	require.NoError(t, err)

	for _, tc := range []struct {
		name string
		q    ledger.InventoryQuery
		want []string
	}{
		{"default is unused only", ledger.InventoryQuery{}, []string{"i1", "i4"}},
		{"used only", ledger.InventoryQuery{Used: ledger.UsedOnly}, []string{"i2", "i3"}},
		{"used or unused, by entry ID", ledger.InventoryQuery{Used: ledger.UsedOrUnused}, []string{"i1", "i2", "i3", "i4"}},
		{"by user", ledger.InventoryQuery{UserIDs: []string{"u2"}, Used: ledger.UsedOrUnused}, []string{"i3", "i4"}},
		{"by users", ledger.InventoryQuery{UserIDs: []string{"u2", "u1", "u9"}, Used: ledger.UsedOrUnused}, []string{"i1", "i2", "i3", "i4"}},
		{"by authority", ledger.InventoryQuery{AuthorityIDs: []string{"a2"}, Used: ledger.UsedOrUnused}, []string{"i2", "i4"}},
		{"by user and authority", ledger.InventoryQuery{UserIDs: []string{"u1"}, AuthorityIDs: []string{"a1"}, Used: ledger.UsedOrUnused}, []string{"i1"}},
		{"by entry IDs, unknown and itemless ignored", ledger.InventoryQuery{
			EntryIDs: []string{e4.ID, e1.ID, noItem.ID, "000000000000000000000000", "not-an-id", e4.ID}, Used: ledger.UsedOrUnused,
		}, []string{"i1", "i4"}},
		{"by entry IDs and user", ledger.InventoryQuery{EntryIDs: []string{e1.ID, e3.ID, e4.ID}, UserIDs: []string{"u2"}, Used: ledger.UsedOrUnused}, []string{"i3", "i4"}},
		{"by entry IDs, used", ledger.InventoryQuery{EntryIDs: []string{e1.ID, e2.ID}, Used: ledger.UsedOnly}, []string{"i2"}},
		{"all filters together", ledger.InventoryQuery{
			EntryIDs: []string{e1.ID, e2.ID, e3.ID}, UserIDs: []string{"u1"}, AuthorityIDs: []string{"a2"}, Used: ledger.UsedOnly,
		}, []string{"i2"}},
		{"after", ledger.InventoryQuery{After: e2.ID, Used: ledger.UsedOrUnused}, []string{"i3", "i4"}},
		{"limit", ledger.InventoryQuery{Limit: 3, Used: ledger.UsedOrUnused}, []string{"i1", "i2", "i3"}},
		{"after and limit by user", ledger.InventoryQuery{UserIDs: []string{"u1", "u2"}, After: e1.ID, Limit: 2, Used: ledger.UsedOrUnused}, []string{"i2", "i3"}},
		{"unused by authority", ledger.InventoryQuery{AuthorityIDs: []string{"a1"}}, []string{"i1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, inventory(t, l, tc.q))
		})
	}

	items, err := l.Inventory(ctx, ledger.InventoryQuery{EntryIDs: []string{e2.ID}, Used: ledger.UsedOnly})
	require.NoError(t, err)
	require.False(t, used2.Item.UsedOn.IsZero())
	require.Equal(t, []ledger.InventoryItem{{EntryID: e2.ID, AuthorityID: "a2", UserID: "u1",
		Item: ledger.Item{Name: "i2", Used: true, UsedOn: used2.Item.UsedOn, UsedBy: "a1"}}}, items, "inventory reports who used an item, and when")
}

// testItemData checks that item data, any JSON value, comes back byte for
// byte: the original service turned arrays into objects.
func testItemData(t *testing.T, ns NewStore) {
	ctx := context.Background()
	l, _ := newLedger(t, ns)
	for _, data := range []string{
		`[1, 2, 3]`,
		`[{"a": [true, false, null]}, []]`,
		`{"internal_id": "001122", "tags": ["x", "y"]}`,
		"{\n\t\"spaced\" :  1.50 }",
		`"just a string"`,
		`42`,
		`-0.000001e10`,
		`null`,
		`{"ünï": "cödé \u00e9 \ud83d\ude00"}`,
	} {
		e := create(t, l, "a", "u", "0", &ledger.Item{Name: "thing", Data: json.RawMessage(data)})
		require.Equal(t, data, string(e.Item.Data), "CreateEntry result")
		items, err := l.Inventory(ctx, ledger.InventoryQuery{EntryIDs: []string{e.ID}})
		require.NoError(t, err)
		require.Len(t, items, 1)
		require.Equal(t, data, string(items[0].Item.Data), "Inventory result")
		used, err := l.UseItem(ctx, "a", e.ID)
		require.NoError(t, err)
		require.Equal(t, data, string(used.Item.Data), "UseItem result")
		es, err := l.Entries(ctx, ledger.EntryQuery{EntryIDs: []string{e.ID}})
		require.NoError(t, err)
		require.Equal(t, data, string(es[0].Item.Data), "Entries result")
	}
	e := create(t, l, "a", "u", "0", &ledger.Item{Name: "no data"})
	require.Nil(t, e.Item.Data)
	e = create(t, l, "a", "u", "0", &ledger.Item{Name: "empty data", Data: json.RawMessage{}})
	require.Nil(t, e.Item.Data, "empty data is no data")
}

func testUseItem(t *testing.T, ns NewStore) {
	ctx := context.Background()
	l, _ := newLedger(t, ns)
	create(t, l, "bank", "u", "10", nil)
	e := create(t, l, "shop", "u", "-5", &ledger.Item{Name: "Cool Shades", Data: json.RawMessage(`{"internal_id": "001122"}`)})
	require.False(t, e.Item.Used)
	plain := create(t, l, "shop", "u", "1", nil)

	used, err := l.UseItem(ctx, "another-authority", e.ID)
	require.NoError(t, err, "any authority may use any item by default")
	require.True(t, used.Item.Used)
	require.Equal(t, e.ID, used.ID)
	require.Equal(t, e.CreatedOn, used.CreatedOn)
	requireDecimal(t, "-5", used.Amount)
	require.Equal(t, `{"internal_id": "001122"}`, string(used.Item.Data))
	require.False(t, e.Item.Used, "the entry returned earlier is the caller's, untouched")

	_, err = l.UseItem(ctx, "shop", e.ID)
	require.ErrorIs(t, err, ledger.ErrItemUsed)
	_, err = l.UseItem(ctx, "shop", plain.ID)
	require.ErrorIs(t, err, ledger.ErrNoItem)
	_, err = l.UseItem(ctx, "shop", "000000000000000000000000")
	require.ErrorIs(t, err, ledger.ErrNotFound)

	// The used flag is stored, not just returned.
	require.Equal(t, []string{"Cool Shades"}, inventory(t, l, ledger.InventoryQuery{Used: ledger.UsedOnly}))
	require.Empty(t, inventory(t, l, ledger.InventoryQuery{}))
	es, err := l.Entries(ctx, ledger.EntryQuery{EntryIDs: []string{e.ID}})
	require.NoError(t, err)
	require.True(t, es[0].Item.Used)
	require.Equal(t, []string{"u=6"}, totals(t, l, ledger.WalletQuery{}), "using an item moves no value")
}

func testGrantorOnly(t *testing.T, ns NewStore) {
	ctx := context.Background()
	l, _ := newLedger(t, ns, ledger.WithGrantorOnlyItemUse())
	e := create(t, l, "shop", "u", "0", &ledger.Item{Name: "ticket"})
	_, err := l.UseItem(ctx, "other", e.ID)
	require.ErrorIs(t, err, ledger.ErrForbidden)
	require.Equal(t, []string{"ticket"}, inventory(t, l, ledger.InventoryQuery{}), "a forbidden use writes nothing")
	_, err = l.UseItem(ctx, "shop", e.ID)
	require.NoError(t, err)
}

func testEntryIDs(t *testing.T, ns NewStore) {
	clk := newClock()
	clk.step = 0 // every entry at the same instant: the sequence must still order them
	l, _ := newLedger(t, ns, ledger.WithClock(clk.Now))
	var prev ledger.Entry
	for i := range 50 {
		e := create(t, l, "a", fmt.Sprintf("u%d", i%4), "1", nil)
		require.Len(t, e.ID, 24)
		require.Greater(t, e.ID, prev.ID, "IDs sort in creation order")
		require.False(t, e.CreatedOn.Before(prev.CreatedOn), "CreatedOn never goes back")
		prev = e
	}
	es, err := l.Entries(context.Background(), ledger.EntryQuery{})
	require.NoError(t, err)
	require.Len(t, es, 50)
	require.Equal(t, prev.ID, es[49].ID)
}

// testNewLedgerContinuesIDs checks that a second ledger over the same
// data continues after the first one's entries even if the clock went
// back, as after a restart on a machine whose clock was corrected.
func testNewLedgerContinuesIDs(t *testing.T, ns NewStore) {
	s := newStore(t, ns)
	late := newClock()
	late.now = late.now.AddDate(1, 0, 0)
	l, err := ledger.New(s, ledger.WithClock(late.Now))
	require.NoError(t, err)
	first := create(t, l, "a", "u", "1", nil)
	// A second ledger over the store, with a clock a year behind.
	l2, err := ledger.New(s, ledger.WithClock(newClock().Now))
	require.NoError(t, err)
	second := create(t, l2, "a", "u", "1", nil)
	require.Greater(t, second.ID, first.ID)
	require.False(t, second.CreatedOn.Before(first.CreatedOn))
	require.NoError(t, l2.Verify(context.Background()))
}

// testClockSkew runs two ledgers over one store, as two processes
// sharing a database would, one with a clock a minute behind the other.
// A user's entries must still sort in the order they were written, so
// that every entry's Balance follows from the ones before it, as-of
// totals are right and Verify, Export and Import accept the ledger.
func testClockSkew(t *testing.T, ns NewStore) {
	ctx := context.Background()
	s := newStore(t, ns)
	ahead := newClock()
	behind := newClock()
	behind.now = behind.now.Add(-time.Minute)
	a, err := ledger.New(s, ledger.WithClock(ahead.Now))
	require.NoError(t, err)
	b, err := ledger.New(s, ledger.WithClock(behind.Now))
	require.NoError(t, err)

	create(t, a, "bank", "u", "10", nil)
	e := create(t, b, "shop", "u", "-4", nil) // written second, by the ledger whose clock is behind
	requireDecimal(t, "6", e.Balance)
	create(t, a, "bank", "u", "1", nil)
	create(t, b, "shop", "u", "-2", nil)

	es, err := b.Entries(ctx, ledger.EntryQuery{UserIDs: []string{"u"}})
	require.NoError(t, err)
	var got []string
	for _, e := range es {
		got = append(got, e.Amount.String()+"="+e.Balance.String())
	}
	require.Equal(t, []string{"10=10", "-4=6", "1=7", "-2=5"}, got, "entries in the order they were written")
	require.NoError(t, b.Verify(ctx))
	for i := 1; i < len(es); i++ {
		require.False(t, es[i].CreatedOn.Before(es[i-1].CreatedOn), "CreatedOn follows the order of the entries")
	}
	require.Equal(t, []string{"u=5"}, totals(t, b, ledger.WalletQuery{AsOf: es[3].CreatedOn}))
	var out bytes.Buffer
	require.NoError(t, b.Export(ctx, &out))
	require.NoError(t, ledger.Import(ctx, newLedgerOn(t, ns), &out), "the ledger moves to another store")
}

func newLedgerOn(t *testing.T, ns NewStore) *ledger.Ledger {
	t.Helper()
	l, _ := newLedger(t, ns)
	return l
}
