package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/shopspring/decimal"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/walletledger/ledger"
)

// runContract checks the Store interface itself, below the ledger.
func runContract(t *testing.T, ns NewStore) {
	t.Run("EmptyStore", func(t *testing.T) { testEmptyStore(t, ns) })
	t.Run("InsertAndRead", func(t *testing.T) { testInsertAndRead(t, ns) })
	t.Run("Scans", func(t *testing.T) { testScans(t, ns) })
	t.Run("Totals", func(t *testing.T) { testTotals(t, ns) })
	t.Run("SetItemUsed", func(t *testing.T) { testSetItemUsed(t, ns) })
	t.Run("InsertUsed", func(t *testing.T) { testInsertUsed(t, ns) })
	t.Run("Duplicates", func(t *testing.T) { testDuplicates(t, ns) })
	t.Run("Rollback", func(t *testing.T) { testRollback(t, ns) })
	t.Run("Savepoints", func(t *testing.T) { testSavepoints(t, ns) })
	t.Run("ReadYourWrites", func(t *testing.T) { testReadYourWrites(t, ns) })
	t.Run("Serializable", func(t *testing.T) { testSerializable(t, ns) })
	t.Run("ReturnedMemoryIsCallers", func(t *testing.T) { testReturnedMemory(t, ns) })
	t.Run("Context", func(t *testing.T) { testContext(t, ns) })
	t.Run("Close", func(t *testing.T) { testClose(t, ns) })
	t.Run("Wallets", func(t *testing.T) { runWalletContract(t, ns) })
	t.Run("Holds", func(t *testing.T) { runHoldContract(t, ns) })
	t.Run("Changes", func(t *testing.T) { runChangeContract(t, ns) })
}

// record builds a test record; n orders it and seeds its fields.
func record(n int, user, auth string, item bool) ledger.Record {
	nanos := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano() + int64(n)*int64(time.Millisecond)
	r := ledger.Record{
		Entry: ledger.Entry{
			ID:          id(nanos, uint32(n)),
			AuthorityID: auth,
			UserID:      user,
			CreatedOn:   time.Unix(0, nanos).UTC(),
			Amount:      decimal.New(int64(n*137%1000-300), -2),
			Reason:      fmt.Sprintf("reason %d", n),
			Balance:     decimal.New(int64(n*1000+7), -3),
		},
		AuthorityBalance: decimal.New(int64(-n), 0),
	}
	if item {
		r.Item = &ledger.Item{Name: fmt.Sprintf("item %d", n), Data: []byte(fmt.Sprintf(`[%d, {"k": "v"} ]`, n))}
	}
	return r
}

func insert(t *testing.T, s ledger.Store, rs ...ledger.Record) {
	t.Helper()
	err := s.Update(context.Background(), func(tx ledger.Tx) error {
		for _, r := range rs {
			if err := tx.InsertEntry(context.Background(), r); err != nil {
				return err
			}
		}
		return nil
	})
	require.NoError(t, err)
}

func view(t *testing.T, s ledger.Store, fn func(tx ledger.ReadTx)) {
	t.Helper()
	require.NoError(t, s.View(context.Background(), func(tx ledger.ReadTx) error {
		fn(tx)
		return nil
	}))
}

// requireSameRecord fails unless got holds exactly what want holds.
func requireSameRecord(t require.TestingT, want, got ledger.Record) {
	if h, ok := t.(interface{ Helper() }); ok {
		h.Helper()
	}
	require.Equal(t, want.ID, got.ID)
	require.Equal(t, want.AuthorityID, got.AuthorityID, want.ID)
	require.Equal(t, want.UserID, got.UserID, want.ID)
	require.Truef(t, want.CreatedOn.Equal(got.CreatedOn), "%s CreatedOn: got %v, want %v", want.ID, got.CreatedOn, want.CreatedOn)
	require.Truef(t, want.Amount.Equal(got.Amount), "%s Amount: got %s, want %s", want.ID, got.Amount, want.Amount)
	require.Equal(t, want.Reason, got.Reason, want.ID)
	require.Truef(t, want.Balance.Equal(got.Balance), "%s Balance: got %s, want %s", want.ID, got.Balance, want.Balance)
	require.Truef(t, want.AuthorityBalance.Equal(got.AuthorityBalance), "%s AuthorityBalance: got %s, want %s", want.ID, got.AuthorityBalance, want.AuthorityBalance)
	require.Equal(t, want.IdempotencyKey, got.IdempotencyKey, want.ID)
	require.Equal(t, want.UseIdempotencyKey, got.UseIdempotencyKey, "%s UseIdempotencyKey", want.ID)
	require.Equal(t, want.Currency, got.Currency, "%s Currency", want.ID)
	if len(want.Metadata) == 0 {
		require.Empty(t, got.Metadata, "%s Metadata", want.ID)
	} else {
		require.Equal(t, want.Metadata, got.Metadata, "%s Metadata", want.ID)
	}
	require.Equal(t, want.TransferID, got.TransferID, "%s TransferID", want.ID)
	require.Equal(t, want.Reverses, got.Reverses, "%s Reverses", want.ID)
	require.Equal(t, want.ReversedBy, got.ReversedBy, "%s ReversedBy", want.ID)
	require.Equal(t, want.HoldID, got.HoldID, "%s HoldID", want.ID)
	if want.Item == nil {
		require.Nil(t, got.Item, want.ID)
		return
	}
	require.NotNil(t, got.Item, want.ID)
	require.Equal(t, want.Item.Name, got.Item.Name, want.ID)
	require.Equal(t, want.Item.Used, got.Item.Used, want.ID)
	require.Equal(t, want.Item.Revoked, got.Item.Revoked, "%s Item.Revoked", want.ID)
	require.Equal(t, want.Item.UsedBy, got.Item.UsedBy, "%s Item.UsedBy", want.ID)
	require.Truef(t, want.Item.UsedOn.Equal(got.Item.UsedOn), "%s Item.UsedOn: got %v, want %v", want.ID, got.Item.UsedOn, want.Item.UsedOn)
	require.Equal(t, want.Item.UsedOn.IsZero(), got.Item.UsedOn.IsZero(), "%s Item.UsedOn zero", want.ID)
	if !got.Item.UsedOn.IsZero() {
		require.Equal(t, time.UTC, got.Item.UsedOn.Location(), "%s Item.UsedOn in UTC", want.ID)
	}
	require.Truef(t, bytes.Equal(want.Item.Data, got.Item.Data), "%s Item.Data: got %q, want %q", want.ID, got.Item.Data, want.Item.Data)
}

func collect(t *testing.T, seq func(func(ledger.Record, error) bool)) []ledger.Record {
	t.Helper()
	var out []ledger.Record
	for r, err := range seq {
		require.NoError(t, err)
		out = append(out, r)
	}
	return out
}

func ids(rs []ledger.Record) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.ID)
	}
	return out
}

func testEmptyStore(t *testing.T, ns NewStore) {
	s := newStore(t, ns)
	ctx := context.Background()
	require.NoError(t, s.Ping(ctx))
	view(t, s, func(tx ledger.ReadTx) {
		_, err := tx.Entry(ctx, id(1, 1))
		require.ErrorIs(t, err, ledger.ErrNotFound)
		_, err = tx.EntryByIdempotencyKey(ctx, "a", "k")
		require.ErrorIs(t, err, ledger.ErrNotFound)
		v, ok, err := tx.Total(ctx, ledger.TotalKey{AuthorityID: "", UserID: "u"})
		require.NoError(t, err)
		require.False(t, ok)
		require.True(t, v.Value.IsZero() && v.LastEntryID == "", "missing total must read as zero, got %+v", v)
		require.Empty(t, collect(t, tx.Entries(ctx, ledger.Scan{})))
		require.Empty(t, collect(t, tx.Entries(ctx, ledger.Scan{UserID: "u", Reverse: true})))
		for range tx.Totals(ctx, "", "", "") {
			t.Fatal("Totals yielded a row on an empty store")
		}
	})
}

func testInsertAndRead(t *testing.T, ns NewStore) {
	s := newStore(t, ns)
	ctx := context.Background()
	odd := record(1, "ünïcödé user", "authority/with:odd chars", true)
	odd.Amount = dec("-123456789012345678901.12345678")
	odd.Balance = dec("0.00000001")
	odd.AuthorityBalance = dec("99999999999999999999999999999.5")
	odd.IdempotencyKey = "retry-1"
	odd.Item.Data = []byte("[1,2,\n  {\"a\": [\"x\", null]}]")
	plain := record(2, "u", "a", false)
	huge := record(3, "u", "a", true)
	huge.Item.Data = bytes.Repeat([]byte(" "), 60<<10)
	huge.Item.Data[0], huge.Item.Data[len(huge.Item.Data)-1] = '[', ']'
	huge.Reason = string(bytes.Repeat([]byte("r"), 4096))
	insert(t, s, odd, plain, huge)
	view(t, s, func(tx ledger.ReadTx) {
		for _, want := range []ledger.Record{odd, plain, huge} {
			got, err := tx.Entry(ctx, want.ID)
			require.NoError(t, err)
			requireSameRecord(t, want, got)
		}
		got, err := tx.EntryByIdempotencyKey(ctx, odd.AuthorityID, odd.IdempotencyKey)
		require.NoError(t, err)
		requireSameRecord(t, odd, got)
		_, err = tx.EntryByIdempotencyKey(ctx, "a", odd.IdempotencyKey)
		require.ErrorIs(t, err, ledger.ErrNotFound, "idempotency keys are scoped to their authority")
	})
}

// testScans checks every combination of Scan fields against a plain
// filter over the inserted records.
func testScans(t *testing.T, ns NewStore) {
	s := newStore(t, ns)
	ctx := context.Background()
	users := []string{"u0", "u1", "u2"}
	auths := []string{"a0", "a1", "a2"}
	var all []ledger.Record
	for n := range 36 {
		all = append(all, record(n, users[n%3], auths[n/3%3], n%2 == 0 || n%7 == 0))
	}
	// Insert out of ID order: stores may not rely on appends.
	shuffled := slices.Clone(all)
	for i := range shuffled {
		j := (i*17 + 5) % len(shuffled)
		shuffled[i], shuffled[j] = shuffled[j], shuffled[i]
	}
	insert(t, s, shuffled[:20]...)
	insert(t, s, shuffled[20:]...)

	bounds := []struct{ start, end string }{
		{"", ""},
		{all[10].ID, ""},
		{"", all[25].ID},
		{all[7].ID, all[30].ID},
		{all[12].ID[:16], all[20].ID[:16]}, // time-only bounds, as the ledger builds them
		{all[5].ID + "\x00", ""},           // "after", as the ledger builds it
	}
	view(t, s, func(tx ledger.ReadTx) {
		for _, u := range append([]string{"", "nobody"}, users...) {
			for _, a := range append([]string{"", "nobody"}, auths...) {
				for _, items := range []bool{false, true} {
					for _, b := range bounds {
						for _, rev := range []bool{false, true} {
							sc := ledger.Scan{UserID: u, AuthorityID: a, ItemsOnly: items, Start: b.start, End: b.end, Reverse: rev}
							var want []string
							for _, r := range all {
								if (u == "" || r.UserID == u) && (a == "" || r.AuthorityID == a) &&
									(!items || r.Item != nil) && (b.start == "" || r.ID >= b.start) && (b.end == "" || r.ID < b.end) {
									want = append(want, r.ID)
								}
							}
							if rev {
								slices.Reverse(want)
							}
							got := ids(collect(t, tx.Entries(ctx, sc)))
							require.Equalf(t, want, got, "scan %+v", sc)
						}
					}
				}
			}
		}
		// Early exit from an iterator must be clean.
		for r, err := range tx.Entries(ctx, ledger.Scan{}) {
			require.NoError(t, err)
			requireSameRecord(t, all[0], r)
			break
		}
	})
}

func testTotals(t *testing.T, ns NewStore) {
	s := newStore(t, ns)
	ctx := context.Background()
	set := func(a, u, v string) {
		require.NoError(t, s.Update(ctx, func(tx ledger.Tx) error {
			return tx.SetTotal(ctx, ledger.TotalKey{AuthorityID: a, UserID: u}, storedTotal(v, a+"/"+u))
		}))
	}
	set("", "bob", "10")
	set("", "alice", "0")
	set("", "carol", "12345678901234567890.12345678")
	set("shop", "bob", "-5")
	set("shop", "dave", "7")
	set("", "bob", "11.5") // overwrite
	view(t, s, func(tx ledger.ReadTx) {
		v, ok, err := tx.Total(ctx, ledger.TotalKey{AuthorityID: "", UserID: "bob"})
		require.NoError(t, err)
		require.True(t, ok)
		requireDecimal(t, "11.5", v.Value)
		require.Equal(t, storedTotal("0", "/bob").LastEntryID, v.LastEntryID, "the last entry ID comes back")
		v, ok, err = tx.Total(ctx, ledger.TotalKey{AuthorityID: "", UserID: "alice"})
		require.NoError(t, err)
		require.True(t, ok, "a stored zero total exists")
		requireDecimal(t, "0", v.Value)
		_, ok, err = tx.Total(ctx, ledger.TotalKey{AuthorityID: "shop", UserID: "alice"})
		require.NoError(t, err)
		require.False(t, ok, "totals are per authority")

		type row struct{ u, v string }
		rows := func(a, after string) []row {
			var out []row
			for r, err := range tx.Totals(ctx, a, "", after) {
				require.NoError(t, err)
				require.Equal(t, storedTotal("0", a+"/"+r.UserID).LastEntryID, r.LastEntryID)
				out = append(out, row{r.UserID, r.Value.String()})
			}
			return out
		}
		require.Equal(t, []row{{"alice", "0"}, {"bob", "11.5"}, {"carol", "12345678901234567890.12345678"}}, rows("", ""))
		require.Equal(t, []row{{"carol", "12345678901234567890.12345678"}}, rows("", "bob"))
		require.Equal(t, []row{{"bob", "11.5"}, {"carol", "12345678901234567890.12345678"}}, rows("", "b"))
		require.Equal(t, []row{{"bob", "-5"}, {"dave", "7"}}, rows("shop", ""))
		require.Empty(t, rows("nobody", ""))

		var auths []string
		for g, err := range tx.TotalGroups(ctx) {
			require.NoError(t, err)
			require.Equal(t, "", g.Currency)
			auths = append(auths, g.AuthorityID)
		}
		slices.Sort(auths)
		require.Equal(t, []string{"", "shop"}, auths, "each authority with a stored total, once")
	})
}

// aUse is an item use with every field set, at a time with
// nanoseconds.
var aUse = ledger.ItemUse{
	AuthorityID: "arcade", At: time.Date(2026, 2, 3, 4, 5, 6, 789, time.UTC), IdempotencyKey: "use-1",
}

// used returns r with its item used by u, as a store must read it back.
func used(r ledger.Record, u ledger.ItemUse) ledger.Record {
	it := *r.Item
	it.Used, it.UsedOn, it.UsedBy = true, u.At, u.AuthorityID
	r.Item, r.UseIdempotencyKey = &it, u.IdempotencyKey
	return r
}

func testSetItemUsed(t *testing.T, ns NewStore) {
	s := newStore(t, ns)
	ctx := context.Background()
	withItem, without, keyless := record(1, "u", "a", true), record(2, "u", "a", false), record(3, "u", "a", true)
	withItem.IdempotencyKey = "grant-1" // the entry's key, apart from the use's
	insert(t, s, withItem, without, keyless)
	require.NoError(t, s.Update(ctx, func(tx ledger.Tx) error { return tx.SetItemUsed(ctx, withItem.ID, aUse) }))
	// A use without a key and without a time (as imported from a stream
	// written before uses were recorded).
	require.NoError(t, s.Update(ctx, func(tx ledger.Tx) error { return tx.SetItemUsed(ctx, keyless.ID, ledger.ItemUse{}) }))
	err := s.Update(ctx, func(tx ledger.Tx) error { return tx.SetItemUsed(ctx, without.ID, aUse) })
	require.ErrorIs(t, err, ledger.ErrNoItem)
	err = s.Update(ctx, func(tx ledger.Tx) error { return tx.SetItemUsed(ctx, id(9, 9), aUse) })
	require.ErrorIs(t, err, ledger.ErrNotFound)
	view(t, s, func(tx ledger.ReadTx) {
		got, err := tx.Entry(ctx, withItem.ID)
		require.NoError(t, err)
		requireSameRecord(t, used(withItem, aUse), got)
		got, err = tx.EntryByIdempotencyKey(ctx, "a", "grant-1")
		require.NoError(t, err)
		requireSameRecord(t, used(withItem, aUse), got)
		got, err = tx.Entry(ctx, keyless.ID)
		require.NoError(t, err)
		requireSameRecord(t, used(keyless, ledger.ItemUse{}), got)
		got, err = tx.Entry(ctx, without.ID)
		require.NoError(t, err)
		requireSameRecord(t, without, got)
		items := collect(t, tx.Entries(ctx, ledger.Scan{UserID: "u", ItemsOnly: true}))
		require.Len(t, items, 2)
		requireSameRecord(t, used(withItem, aUse), items[0])
		requireSameRecord(t, used(keyless, ledger.ItemUse{}), items[1])
	})
}

// testInsertUsed inserts records whose items are used, as Import does:
// the use's fields are kept as given.
func testInsertUsed(t *testing.T, ns NewStore) {
	s := newStore(t, ns)
	ctx := context.Background()
	full := used(record(1, "u", "a", true), aUse)
	bare := used(record(2, "u", "a", true), ledger.ItemUse{})
	noKey := used(record(3, "v", "b", true), ledger.ItemUse{AuthorityID: "b", At: time.Unix(0, 1).UTC()})
	late := used(record(4, "v", "b", true), ledger.ItemUse{AuthorityID: "b", At: time.Unix(0, math.MaxInt64).UTC(), IdempotencyKey: "k"})
	unused := record(5, "v", "b", true)
	insert(t, s, full, bare, noKey, late, unused)
	view(t, s, func(tx ledger.ReadTx) {
		for _, want := range []ledger.Record{full, bare, noKey, late, unused} {
			got, err := tx.Entry(ctx, want.ID)
			require.NoError(t, err)
			requireSameRecord(t, want, got)
		}
		require.Equal(t, []string{full.ID, bare.ID, noKey.ID, late.ID, unused.ID}, ids(collect(t, tx.Entries(ctx, ledger.Scan{ItemsOnly: true}))))
	})
}

func testDuplicates(t *testing.T, ns NewStore) {
	s := newStore(t, ns)
	ctx := context.Background()
	first := record(1, "u", "a", false)
	first.IdempotencyKey = "k"
	insert(t, s, first)

	sameID := record(1, "other", "b", true)
	sameKey := record(2, "other", "a", false)
	sameKey.IdempotencyKey = "k"
	for name, r := range map[string]ledger.Record{"same ID": sameID, "same idempotency key": sameKey} {
		fresh := record(3, "fresh", "a", false)
		err := s.Update(ctx, func(tx ledger.Tx) error {
			if err := tx.InsertEntry(ctx, fresh); err != nil {
				return err
			}
			return tx.InsertEntry(ctx, r)
		})
		require.Error(t, err, name)
		view(t, s, func(tx ledger.ReadTx) {
			got, err := tx.Entry(ctx, first.ID)
			require.NoError(t, err)
			requireSameRecord(t, first, got)
			_, err = tx.Entry(ctx, fresh.ID)
			require.ErrorIs(t, err, ledger.ErrNotFound, "%s: the failed transaction left a write behind", name)
			require.Len(t, collect(t, tx.Entries(ctx, ledger.Scan{})), 1, name)
		})
	}
}

func testRollback(t *testing.T, ns NewStore) {
	s := newStore(t, ns)
	ctx := context.Background()
	kept := record(1, "u", "a", true)
	insert(t, s, kept)
	require.NoError(t, s.Update(ctx, func(tx ledger.Tx) error {
		return tx.SetTotal(ctx, ledger.TotalKey{AuthorityID: "", UserID: "u"}, storedTotal("5", "u"))
	}))

	boom := errors.New("boom")
	lost := record(2, "v", "b", true)
	lost.IdempotencyKey = "k"
	err := s.Update(ctx, func(tx ledger.Tx) error {
		require.NoError(t, tx.InsertEntry(ctx, lost))
		require.NoError(t, tx.SetItemUsed(ctx, kept.ID, aUse))
		require.NoError(t, tx.SetTotal(ctx, ledger.TotalKey{AuthorityID: "", UserID: "u"}, storedTotal("6", "u2")))
		require.NoError(t, tx.SetTotal(ctx, ledger.TotalKey{AuthorityID: "", UserID: "v"}, storedTotal("1", "v")))
		require.NoError(t, tx.SetTotal(ctx, ledger.TotalKey{AuthorityID: "b", UserID: "v"}, storedTotal("1", "v")))
		return boom
	})
	require.ErrorIs(t, err, boom, "Update returns fn's error")
	view(t, s, func(tx ledger.ReadTx) {
		_, err := tx.Entry(ctx, lost.ID)
		require.ErrorIs(t, err, ledger.ErrNotFound)
		_, err = tx.EntryByIdempotencyKey(ctx, "b", "k")
		require.ErrorIs(t, err, ledger.ErrNotFound)
		got, err := tx.Entry(ctx, kept.ID)
		require.NoError(t, err)
		requireSameRecord(t, kept, got) // the rolled-back use is gone, with its fields
		require.Equal(t, []string{kept.ID}, ids(collect(t, tx.Entries(ctx, ledger.Scan{}))))
		require.Empty(t, collect(t, tx.Entries(ctx, ledger.Scan{UserID: "v"})))
		require.Empty(t, collect(t, tx.Entries(ctx, ledger.Scan{AuthorityID: "b", ItemsOnly: true})))
		v, _, err := tx.Total(ctx, ledger.TotalKey{AuthorityID: "", UserID: "u"})
		require.NoError(t, err)
		requireDecimal(t, "5", v.Value)
		require.Equal(t, storedTotal("5", "u").LastEntryID, v.LastEntryID, "rolled back to the old total and last entry")
		_, ok, err := tx.Total(ctx, ledger.TotalKey{AuthorityID: "", UserID: "v"})
		require.NoError(t, err)
		require.False(t, ok)
		for r := range tx.Totals(ctx, "b", "", "") {
			t.Fatalf("rolled-back total %v is listed", r)
		}
	})
}

// testSavepoints checks, for a store whose Tx is a [ledger.SavepointTx],
// that RollbackTo undoes exactly the writes made after its mark, in the
// transaction and once committed, and that the transaction goes on.
func testSavepoints(t *testing.T, ns NewStore) {
	s := newStore(t, ns)
	ctx := context.Background()
	u, v := ledger.TotalKey{UserID: "u"}, ledger.TotalKey{UserID: "v"}
	kept, lost, lost2, after := record(1, "u", "a", true), record(2, "v", "b", true), record(3, "u", "a", false), record(4, "u", "a", false)
	lost.IdempotencyKey = "k"
	changes := func(tx ledger.ReadTx) int {
		n := 0
		for _, err := range tx.Changes(ctx, "") {
			require.NoError(t, err)
			n++
		}
		return n
	}
	requireTotal := func(tx ledger.ReadTx, k ledger.TotalKey, want string) {
		t.Helper()
		got, ok, err := tx.Total(ctx, k)
		require.NoError(t, err)
		if want == "" {
			require.False(t, ok, "total %v is stored", k)
			return
		}
		require.True(t, ok, "total %v is not stored", k)
		requireDecimal(t, want, got.Value)
	}
	require.NoError(t, s.Update(ctx, func(tx ledger.Tx) error {
		sp, ok := tx.(ledger.SavepointTx)
		if !ok {
			t.Skip("the store's Tx is not a ledger.SavepointTx")
		}
		require.NoError(t, tx.InsertEntry(ctx, kept))
		require.NoError(t, tx.SetTotal(ctx, u, storedTotal("5", "u")))
		require.NoError(t, tx.AppendChange(ctx, changeRecord(1)))
		mark := sp.Savepoint()
		require.NoError(t, tx.InsertEntry(ctx, lost))
		require.NoError(t, tx.SetItemUsed(ctx, kept.ID, aUse))
		require.NoError(t, tx.SetTotal(ctx, u, storedTotal("6", "u2")))
		require.NoError(t, tx.SetTotal(ctx, v, storedTotal("1", "v")))
		require.NoError(t, tx.AppendChange(ctx, changeRecord(2)))
		inner := sp.Savepoint()
		require.NoError(t, tx.InsertEntry(ctx, lost2))
		require.NoError(t, tx.SetTotal(ctx, u, storedTotal("7", "u3")))

		sp.RollbackTo(inner)
		_, err := tx.Entry(ctx, lost2.ID)
		require.ErrorIs(t, err, ledger.ErrNotFound, "an insert after the inner mark is undone")
		requireTotal(tx, u, "6")
		_, err = tx.Entry(ctx, lost.ID)
		require.NoError(t, err, "an insert before the inner mark is kept")

		sp.RollbackTo(mark)
		_, err = tx.Entry(ctx, lost.ID)
		require.ErrorIs(t, err, ledger.ErrNotFound)
		_, err = tx.EntryByIdempotencyKey(ctx, "b", "k")
		require.ErrorIs(t, err, ledger.ErrNotFound)
		requireTotal(tx, u, "5")
		requireTotal(tx, v, "")
		require.Equal(t, 1, changes(tx))
		got, err := tx.Entry(ctx, kept.ID)
		require.NoError(t, err)
		requireSameRecord(t, kept, got) // its use is undone

		// The transaction goes on after a rollback to a mark.
		require.NoError(t, tx.InsertEntry(ctx, after))
		return nil
	}))
	view(t, s, func(tx ledger.ReadTx) {
		require.Equal(t, []string{kept.ID, after.ID}, ids(collect(t, tx.Entries(ctx, ledger.Scan{}))))
		require.Empty(t, collect(t, tx.Entries(ctx, ledger.Scan{UserID: "v"})))
		requireTotal(tx, u, "5")
		requireTotal(tx, v, "")
		require.Equal(t, 1, changes(tx))
		for r := range tx.Totals(ctx, "", "", "") {
			require.Equal(t, "u", r.UserID, "rolled-back total %v is listed", r)
		}
	})
}

func testReadYourWrites(t *testing.T, ns NewStore) {
	s := newStore(t, ns)
	ctx := context.Background()
	r := record(1, "u", "a", true)
	r.IdempotencyKey = "k"
	require.NoError(t, s.Update(ctx, func(tx ledger.Tx) error {
		require.NoError(t, tx.InsertEntry(ctx, r))
		require.NoError(t, tx.SetTotal(ctx, ledger.TotalKey{AuthorityID: "a", UserID: "u"}, storedTotal("3", "u")))
		got, err := tx.Entry(ctx, r.ID)
		require.NoError(t, err)
		requireSameRecord(t, r, got)
		got, err = tx.EntryByIdempotencyKey(ctx, "a", "k")
		require.NoError(t, err)
		require.Equal(t, r.ID, got.ID)
		require.Equal(t, []string{r.ID}, ids(collect(t, tx.Entries(ctx, ledger.Scan{UserID: "u", AuthorityID: "a", ItemsOnly: true}))))
		require.NoError(t, tx.SetItemUsed(ctx, r.ID, aUse))
		got, err = tx.Entry(ctx, r.ID)
		require.NoError(t, err)
		requireSameRecord(t, used(r, aUse), got)
		got, err = tx.EntryByIdempotencyKey(ctx, "a", "k")
		require.NoError(t, err)
		requireSameRecord(t, used(r, aUse), got)
		v, ok, err := tx.Total(ctx, ledger.TotalKey{AuthorityID: "a", UserID: "u"})
		require.NoError(t, err)
		require.True(t, ok)
		requireDecimal(t, "3", v.Value)
		return nil
	}))
}

// testSerializable increments one total from many goroutines, each
// increment a read-modify-write transaction: a store that is not
// serializable (or that surfaces its conflicts) loses increments.
func testSerializable(t *testing.T, ns NewStore) {
	s := newStore(t, ns)
	ctx := context.Background()
	const workers, each = 8, 25
	var wg sync.WaitGroup
	errs := make(chan error, workers*each)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				errs <- s.Update(ctx, func(tx ledger.Tx) error {
					v, _, err := tx.Total(ctx, ledger.TotalKey{AuthorityID: "", UserID: "counter"})
					if err != nil {
						return err
					}
					return tx.SetTotal(ctx, ledger.TotalKey{AuthorityID: "", UserID: "counter"}, ledger.Total{Value: v.Value.Add(decimal.NewFromInt(1))})
				})
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err, "a store must retry its own conflicts")
	}
	view(t, s, func(tx ledger.ReadTx) {
		v, _, err := tx.Total(ctx, ledger.TotalKey{AuthorityID: "", UserID: "counter"})
		require.NoError(t, err)
		requireDecimal(t, fmt.Sprint(workers*each), v.Value, "lost updates")
	})
}

func testReturnedMemory(t *testing.T, ns NewStore) {
	s := newStore(t, ns)
	ctx := context.Background()
	r := record(1, "u", "a", true)
	want := r
	want.Item = &ledger.Item{Name: r.Item.Name, Data: slices.Clone(r.Item.Data)}
	insert(t, s, r)
	// Scribble over what was passed in and what comes back.
	r.Item.Name, r.Item.Used, r.Item.Data[1] = "changed", true, 'X'
	view(t, s, func(tx ledger.ReadTx) {
		got, err := tx.Entry(ctx, r.ID)
		require.NoError(t, err)
		got.Item.Name, got.Item.Used, got.Item.Data[1] = "changed", true, 'X'
		for got := range tx.Entries(ctx, ledger.Scan{}) {
			got.Item.Data[1] = 'Y'
		}
	})
	view(t, s, func(tx ledger.ReadTx) {
		got, err := tx.Entry(ctx, r.ID)
		require.NoError(t, err)
		requireSameRecord(t, want, got)
	})
}

func testContext(t *testing.T, ns NewStore) {
	s := newStore(t, ns)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	called := false
	err := s.View(ctx, func(ledger.ReadTx) error { called = true; return nil })
	require.ErrorIs(t, err, context.Canceled)
	assert.False(t, called, "View ran fn with a cancelled context")
	err = s.Update(ctx, func(ledger.Tx) error { called = true; return nil })
	require.ErrorIs(t, err, context.Canceled)
	assert.False(t, called, "Update ran fn with a cancelled context")
}

func testClose(t *testing.T, ns NewStore) {
	s := ns(t)
	ctx := context.Background()
	insert(t, s, record(1, "u", "a", false))
	require.NoError(t, s.Close())
	require.ErrorIs(t, s.Ping(ctx), ledger.ErrClosed)
	require.ErrorIs(t, s.View(ctx, func(ledger.ReadTx) error { return nil }), ledger.ErrClosed)
	require.ErrorIs(t, s.Update(ctx, func(ledger.Tx) error { return nil }), ledger.ErrClosed)
	require.ErrorIs(t, s.Close(), ledger.ErrClosed)
}

// requireSameEntry fails unless got holds exactly what want holds;
// decimals are compared by value, not representation.
func requireSameEntry(t require.TestingT, want, got ledger.Entry) {
	if h, ok := t.(interface{ Helper() }); ok {
		h.Helper()
	}
	requireSameRecord(t, ledger.Record{Entry: want}, ledger.Record{Entry: got})
}

// storedTotal makes a stored total whose last entry ID is derived from seed.
func storedTotal(v, seed string) ledger.Total {
	var n int64
	for _, c := range seed {
		n = n*31 + int64(c)
	}
	return ledger.Total{Value: dec(v), LastEntryID: id(n&0x7fffffffffff, uint32(len(seed)))}
}
