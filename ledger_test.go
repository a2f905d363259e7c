package ledger_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shopspring/decimal"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/walletledger/ledger"
	"github.com/walletledger/ledger/memstore"
)

func newLedger(t *testing.T, opts ...ledger.Option) *ledger.Ledger {
	t.Helper()
	l, err := ledger.New(memstore.New(), opts...)
	require.NoError(t, err)
	t.Cleanup(func() { _ = l.Close() })
	return l
}

func dec(s string) decimal.Decimal { return decimal.RequireFromString(s) }

func wallets(t *testing.T, l *ledger.Ledger, q ledger.WalletQuery) string {
	t.Helper()
	ws, err := l.Wallets(context.Background(), q)
	require.NoError(t, err)
	var parts []string
	for _, w := range ws {
		parts = append(parts, w.UserID+"="+w.Total.String())
	}
	return strings.Join(parts, " ")
}

// TestSeedWalkthrough follows the original SDK's documented examples, with
// whole amounts as the original service had them.
func TestSeedWalkthrough(t *testing.T) {
	ctx := context.Background()
	l := newLedger(t, ledger.WithPrecision(0, 18))
	const me, other = "xxyyzz", "yyzzii"

	// c.create_entry(user_id='foobar123', amount=99, reason='returned a lot of cans')
	e, err := l.CreateEntry(ctx, ledger.NewEntry{AuthorityID: me, UserID: "foobar123", Amount: dec("99"), Reason: "returned a lot of cans"})
	require.NoError(t, err)
	assert.Equal(t, "foobar123", e.UserID)
	assert.Equal(t, me, e.AuthorityID)
	assert.Equal(t, "99", e.Amount.String())
	assert.Nil(t, e.Item)

	// bobcats9 buys a soda with nothing in the wallet: NotEnoughFundsError.
	soda := ledger.NewEntry{AuthorityID: other, UserID: "bobcats9", Amount: dec("-5"), Reason: "bought a soda", Item: &ledger.Item{Name: "Soda Can"}}
	_, err = l.CreateEntry(ctx, soda)
	require.ErrorIs(t, err, ledger.ErrNotEnoughFunds)

	// After a payday the soda is affordable, as in the seed's printed wallets.
	_, err = l.CreateEntry(ctx, ledger.NewEntry{AuthorityID: me, UserID: "bobcats9", Amount: dec("600"), Reason: "payday"})
	require.NoError(t, err)
	bought, err := l.CreateEntry(ctx, soda)
	require.NoError(t, err)
	assert.Equal(t, "Soda Can", bought.Item.Name)
	assert.False(t, bought.Item.Used)

	// c.get_wallets()
	assert.Equal(t, "bobcats9=595 foobar123=99", wallets(t, l, ledger.WalletQuery{}))
	// c.get_wallets(user_ids=['foobar123'], authority_id=['xxyyzz'])
	assert.Equal(t, "foobar123=99", wallets(t, l, ledger.WalletQuery{UserIDs: []string{"foobar123"}, AuthorityIDs: []string{me}}))
	// Only our own entries count.
	assert.Equal(t, "bobcats9=600 foobar123=99", wallets(t, l, ledger.WalletQuery{AuthorityIDs: []string{me}}))

	// Cool Shades with data given as a JSON string, as in the seed.
	_, err = l.CreateEntry(ctx, ledger.NewEntry{AuthorityID: me, UserID: "1", Amount: dec("1000"), Reason: "payday"})
	require.NoError(t, err)
	shades, err := l.CreateEntry(ctx, ledger.NewEntry{
		AuthorityID: me, UserID: "1", Amount: dec("-100"), Reason: "bought sunglasses",
		Item: &ledger.Item{Name: "Cool Shades", Data: json.RawMessage(`"{ \"internal_id\": \"001122\" }"`)},
	})
	require.NoError(t, err)

	// c.get_inventory() and its filters.
	inv := func(q ledger.InventoryQuery) []string {
		items, err := l.Inventory(ctx, q)
		require.NoError(t, err)
		var names []string
		for _, it := range items {
			names = append(names, it.UserID+":"+it.Item.Name)
		}
		return names
	}
	assert.Equal(t, []string{"bobcats9:Soda Can", "1:Cool Shades"}, inv(ledger.InventoryQuery{}))
	assert.Equal(t, []string{"1:Cool Shades"}, inv(ledger.InventoryQuery{UserIDs: []string{"0", "1"}}))
	assert.Equal(t, []string{"bobcats9:Soda Can"}, inv(ledger.InventoryQuery{AuthorityIDs: []string{other}}))
	assert.Equal(t, []string{"1:Cool Shades"}, inv(ledger.InventoryQuery{EntryIDs: []string{shades.ID, "1234"}}))

	// c.use_item(entry_id=...) returns the modified entry.
	used, err := l.UseItem(ctx, me, shades.ID)
	require.NoError(t, err)
	assert.True(t, used.Item.Used)
	assert.Equal(t, `"{ \"internal_id\": \"001122\" }"`, string(used.Item.Data))
	// c.get_inventory(used=True) / (used=None)
	assert.Equal(t, []string{"1:Cool Shades"}, inv(ledger.InventoryQuery{Used: ledger.UsedOnly}))
	assert.Equal(t, []string{"bobcats9:Soda Can", "1:Cool Shades"}, inv(ledger.InventoryQuery{Used: ledger.UsedOrUnused}))
	assert.Equal(t, []string{"bobcats9:Soda Can"}, inv(ledger.InventoryQuery{}))

	// c.check_service_health()
	require.NoError(t, l.Health(ctx))
}

// TestValidation refuses every kind of bad NewEntry with ErrInvalid naming
// the field, and writes nothing; the boundary values pass.
func TestValidation(t *testing.T) {
	ctx := context.Background()
	long := func(n int) string { return strings.Repeat("x", n) }
	valid := func() ledger.NewEntry {
		return ledger.NewEntry{AuthorityID: "a", UserID: "u", Amount: dec("1"), Reason: "r"}
	}
	bigData := func(n int) json.RawMessage { return json.RawMessage(`"` + long(n-2) + `"`) }
	for _, tc := range []struct {
		name   string
		change func(*ledger.NewEntry)
		field  string // "" = valid
	}{
		{"valid", func(*ledger.NewEntry) {}, ""},
		{"empty authority", func(e *ledger.NewEntry) { e.AuthorityID = "" }, "AuthorityID"},
		{"authority over 256 bytes", func(e *ledger.NewEntry) { e.AuthorityID = long(257) }, "AuthorityID"},
		{"authority of 256 bytes", func(e *ledger.NewEntry) { e.AuthorityID = long(256) }, ""},
		{"non-UTF-8 authority", func(e *ledger.NewEntry) { e.AuthorityID = "a\xff" }, "AuthorityID"},
		{"empty user", func(e *ledger.NewEntry) { e.UserID = "" }, "UserID"},
		{"user over 256 bytes", func(e *ledger.NewEntry) { e.UserID = long(257) }, "UserID"},
		{"user of 256 bytes", func(e *ledger.NewEntry) { e.UserID = long(256) }, ""},
		{"non-UTF-8 user", func(e *ledger.NewEntry) { e.UserID = "\xc3\x28" }, "UserID"},
		{"empty reason", func(e *ledger.NewEntry) { e.Reason = "" }, "Reason"},
		{"reason over 4 KiB", func(e *ledger.NewEntry) { e.Reason = long(4097) }, "Reason"},
		{"reason of 4 KiB", func(e *ledger.NewEntry) { e.Reason = long(4096) }, ""},
		{"non-UTF-8 reason", func(e *ledger.NewEntry) { e.Reason = "\xff" }, "Reason"},
		{"item without name", func(e *ledger.NewEntry) { e.Item = &ledger.Item{} }, "Item.Name"},
		{"item name over 256 bytes", func(e *ledger.NewEntry) { e.Item = &ledger.Item{Name: long(257)} }, "Item.Name"},
		{"item name of 256 bytes", func(e *ledger.NewEntry) { e.Item = &ledger.Item{Name: long(256)} }, ""},
		{"non-UTF-8 item name", func(e *ledger.NewEntry) { e.Item = &ledger.Item{Name: "\xff"} }, "Item.Name"},
		{"item created used", func(e *ledger.NewEntry) { e.Item = &ledger.Item{Name: "n", Used: true} }, "Item.Used"},
		{"item data not JSON", func(e *ledger.NewEntry) { e.Item = &ledger.Item{Name: "n", Data: json.RawMessage(`{"a":`)} }, "Item.Data"},
		{"item data two values", func(e *ledger.NewEntry) { e.Item = &ledger.Item{Name: "n", Data: json.RawMessage(`1 2`)} }, "Item.Data"},
		{"item data over 64 KiB", func(e *ledger.NewEntry) { e.Item = &ledger.Item{Name: "n", Data: bigData(64<<10 + 1)} }, "Item.Data"},
		{"item data of 64 KiB", func(e *ledger.NewEntry) { e.Item = &ledger.Item{Name: "n", Data: bigData(64 << 10)} }, ""},
		{"amount with 9 places", func(e *ledger.NewEntry) { e.Amount = dec("0.000000001") }, "Amount"},
		{"negative amount with 9 places", func(e *ledger.NewEntry) { e.Amount = dec("-1.123456789") }, "Amount"},
		{"amount with 8 places", func(e *ledger.NewEntry) { e.Amount = dec("0.00000001") }, ""},
		{"amount with a billion places", func(e *ledger.NewEntry) { e.Amount = decimal.New(1, -999_999_999) }, "Amount"},
		{"amount of 10^999999999", func(e *ledger.NewEntry) { e.Amount = decimal.New(1, 999_999_999) }, "Amount"},
		{"trailing zeros are not places", func(e *ledger.NewEntry) { e.Amount = dec("1.5000000000000") }, ""},
		{"amount of 10^22", func(e *ledger.NewEntry) { e.Amount = dec("10000000000000000000000") }, "Amount"},
		{"amount of -10^22", func(e *ledger.NewEntry) { e.Amount = dec("-10000000000000000000000") }, "Amount"},
		{"largest amount", func(e *ledger.NewEntry) { e.Amount = dec("9999999999999999999999.99999999") }, ""},
		{"idempotency key over 256 bytes", func(e *ledger.NewEntry) { e.IdempotencyKey = long(257) }, "IdempotencyKey"},
		{"non-UTF-8 idempotency key", func(e *ledger.NewEntry) { e.IdempotencyKey = "\xff" }, "IdempotencyKey"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, lb := newLedger(t), newLedger(t)
			e := valid()
			tc.change(&e)
			_, err := l.CreateEntry(ctx, e)
			first := valid()
			first.UserID = "someone else"
			_, batchErr := lb.CreateEntries(ctx, []ledger.NewEntry{first, e})
			if tc.field == "" {
				require.NoError(t, err)
				require.NoError(t, batchErr)
				return
			}
			require.ErrorIs(t, err, ledger.ErrInvalid)
			var ie *ledger.InvalidError
			require.ErrorAs(t, err, &ie)
			require.Equal(t, tc.field, ie.Field)
			require.True(t, strings.HasPrefix(err.Error(), "ledger: invalid "+tc.field+": "), err.Error())
			var ee *ledger.EntryError
			require.ErrorAs(t, batchErr, &ee)
			require.Equal(t, 1, ee.Index)
			require.ErrorIs(t, batchErr, ledger.ErrInvalid)
			for _, l := range []*ledger.Ledger{l, lb} {
				es, err := l.Entries(ctx, ledger.EntryQuery{})
				require.NoError(t, err)
				require.Empty(t, es, "invalid input writes nothing")
			}
		})
	}
}

func TestQueryValidation(t *testing.T) {
	ctx := context.Background()
	l := newLedger(t)
	for _, tc := range []struct {
		name  string
		call  func() error
		field string
	}{
		{"wallets: empty user", func() error { _, err := l.Wallets(ctx, ledger.WalletQuery{UserIDs: []string{"u", ""}}); return err }, "UserIDs"},
		{"wallets: long authority", func() error {
			_, err := l.Wallets(ctx, ledger.WalletQuery{AuthorityIDs: []string{strings.Repeat("a", 257)}})
			return err
		}, "AuthorityIDs"},
		{"wallets: negative limit", func() error { _, err := l.Wallets(ctx, ledger.WalletQuery{Limit: -1}); return err }, "Limit"},
		{"wallets: non-UTF-8 after", func() error { _, err := l.Wallets(ctx, ledger.WalletQuery{After: "\xff"}); return err }, "After"},
		{"inventory: unknown used filter", func() error { _, err := l.Inventory(ctx, ledger.InventoryQuery{Used: 3}); return err }, "Used"},
		{"inventory: negative used filter", func() error { _, err := l.Inventory(ctx, ledger.InventoryQuery{Used: -1}); return err }, "Used"},
		{"inventory: non-UTF-8 entry ID", func() error {
			_, err := l.Inventory(ctx, ledger.InventoryQuery{EntryIDs: []string{"\xff"}})
			return err
		}, "EntryIDs"},
		{"inventory: negative limit", func() error { _, err := l.Inventory(ctx, ledger.InventoryQuery{Limit: -5}); return err }, "Limit"},
		{"entries: since after until", func() error {
			now := time.Now()
			_, err := l.Entries(ctx, ledger.EntryQuery{Since: now, Until: now.Add(-time.Second)})
			return err
		}, "Since"},
		{"entries: empty authority", func() error { _, err := l.Entries(ctx, ledger.EntryQuery{AuthorityIDs: []string{""}}); return err }, "AuthorityIDs"},
		{"use: empty authority", func() error { _, err := l.UseItem(ctx, "", "x"); return err }, "AuthorityID"},
		{"use: empty entry", func() error { _, err := l.UseItem(ctx, "a", ""); return err }, "EntryID"},
		{"use: long entry", func() error { _, err := l.UseItem(ctx, "a", strings.Repeat("0", 257)); return err }, "EntryID"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			var ie *ledger.InvalidError
			require.ErrorAs(t, err, &ie)
			require.ErrorIs(t, err, ledger.ErrInvalid)
			require.Equal(t, tc.field, ie.Field)
		})
	}
}

func TestOptions(t *testing.T) {
	ctx := context.Background()
	t.Run("bad options fail New", func(t *testing.T) {
		for _, opt := range []ledger.Option{
			ledger.WithPrecision(-1, 10), ledger.WithPrecision(5, 5), ledger.WithPrecision(0, 0),
			ledger.WithLimits(ledger.Limits{MaxIDBytes: -1}), ledger.WithClock(nil),
			ledger.WithGroupCommit(0, 0), ledger.WithGroupCommit(1, -time.Second),
		} {
			_, err := ledger.New(memstore.New(), opt)
			require.Error(t, err)
		}
		_, err := ledger.New(nil)
		require.ErrorIs(t, err, ledger.ErrInvalid)
	})
	t.Run("whole amounts", func(t *testing.T) {
		l := newLedger(t, ledger.WithPrecision(0, 18))
		_, err := l.CreateEntry(ctx, ledger.NewEntry{AuthorityID: "a", UserID: "u", Amount: dec("1.5"), Reason: "r"})
		require.ErrorIs(t, err, ledger.ErrInvalid)
		_, err = l.CreateEntry(ctx, ledger.NewEntry{AuthorityID: "a", UserID: "u", Amount: dec("1000000000000000000"), Reason: "r"})
		require.ErrorIs(t, err, ledger.ErrInvalid, "10^18 does not fit 18 digits")
		_, err = l.CreateEntry(ctx, ledger.NewEntry{AuthorityID: "a", UserID: "u", Amount: dec("999999999999999999"), Reason: "r"})
		require.NoError(t, err)
		// A total may not outgrow the precision either.
		_, err = l.CreateEntry(ctx, ledger.NewEntry{AuthorityID: "b", UserID: "u", Amount: dec("1"), Reason: "r"})
		require.ErrorIs(t, err, ledger.ErrInvalid)
		require.Equal(t, "u=999999999999999999", wallets(t, l, ledger.WalletQuery{}))
	})
	t.Run("limits", func(t *testing.T) {
		l := newLedger(t, ledger.WithLimits(ledger.Limits{MaxIDBytes: 4, MaxBatchEntries: 2}))
		_, err := l.CreateEntry(ctx, ledger.NewEntry{AuthorityID: "a", UserID: "users", Amount: dec("1"), Reason: "reason kept at default"})
		require.ErrorIs(t, err, ledger.ErrInvalid)
		e := ledger.NewEntry{AuthorityID: "a", UserID: "user", Amount: dec("1"), Reason: "r"}
		_, err = l.CreateEntries(ctx, []ledger.NewEntry{e, e, e})
		require.ErrorIs(t, err, ledger.ErrInvalid)
		_, err = l.CreateEntries(ctx, []ledger.NewEntry{e, e})
		require.NoError(t, err)
	})
	t.Run("clock", func(t *testing.T) {
		at := time.Date(2030, 5, 6, 7, 8, 9, 123456789, time.FixedZone("X", 3600))
		l := newLedger(t, ledger.WithClock(func() time.Time { return at }))
		e, err := l.CreateEntry(ctx, ledger.NewEntry{AuthorityID: "a", UserID: "u", Amount: dec("1"), Reason: "r"})
		require.NoError(t, err)
		require.True(t, e.CreatedOn.Equal(at), "got %v", e.CreatedOn)
		require.Equal(t, time.UTC, e.CreatedOn.Location())
		at = at.Add(-time.Hour) // the clock goes back
		e2, err := l.CreateEntry(ctx, ledger.NewEntry{AuthorityID: "a", UserID: "u", Amount: dec("1"), Reason: "r"})
		require.NoError(t, err)
		require.True(t, e2.CreatedOn.Equal(e.CreatedOn), "CreatedOn holds still while the clock is behind")
		require.Greater(t, e2.ID, e.ID)
	})
}

// TestErrors reaches every sentinel through the API.
func TestErrors(t *testing.T) {
	ctx := context.Background()
	l := newLedger(t, ledger.WithGrantorOnlyItemUse())
	item, err := l.CreateEntry(ctx, ledger.NewEntry{AuthorityID: "a", UserID: "u", Amount: dec("1"), Reason: "r", Item: &ledger.Item{Name: "i"}, IdempotencyKey: "k"})
	require.NoError(t, err)
	plain, err := l.CreateEntry(ctx, ledger.NewEntry{AuthorityID: "a", UserID: "u", Amount: dec("1"), Reason: "r"})
	require.NoError(t, err)
	_, err = l.UseItem(ctx, "a", item.ID)
	require.NoError(t, err)
	for _, tc := range []struct {
		name string
		err  error
		want error
	}{
		{"invalid", func() error { _, err := l.CreateEntry(ctx, ledger.NewEntry{}); return err }(), ledger.ErrInvalid},
		{"not enough funds", func() error {
			_, err := l.CreateEntry(ctx, ledger.NewEntry{AuthorityID: "a", UserID: "u", Amount: dec("-3"), Reason: "r"})
			return err
		}(), ledger.ErrNotEnoughFunds},
		{"not found", func() error { _, err := l.UseItem(ctx, "a", "ffffffffffffffffffffffff"); return err }(), ledger.ErrNotFound},
		{"no item", func() error { _, err := l.UseItem(ctx, "a", plain.ID); return err }(), ledger.ErrNoItem},
		{"item used", func() error { _, err := l.UseItem(ctx, "a", item.ID); return err }(), ledger.ErrItemUsed},
		{"forbidden", func() error { _, err := l.UseItem(ctx, "b", item.ID); return err }(), ledger.ErrForbidden},
		{"idempotency conflict", func() error {
			_, err := l.CreateEntry(ctx, ledger.NewEntry{AuthorityID: "a", UserID: "v", Amount: dec("1"), Reason: "r", Item: &ledger.Item{Name: "i"}, IdempotencyKey: "k"})
			return err
		}(), ledger.ErrIdempotencyConflict},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.ErrorIs(t, tc.err, tc.want)
			require.True(t, strings.HasPrefix(tc.err.Error(), "ledger: "), tc.err.Error())
			for _, other := range []error{ledger.ErrInvalid, ledger.ErrNotEnoughFunds, ledger.ErrNotFound, ledger.ErrNoItem,
				ledger.ErrItemUsed, ledger.ErrForbidden, ledger.ErrClosed, ledger.ErrIdempotencyConflict, ledger.ErrInconsistent} {
				if other != tc.want {
					require.NotErrorIs(t, tc.err, other)
				}
			}
		})
	}
	ee := &ledger.EntryError{Index: 3, Err: &ledger.NotEnoughFundsError{UserID: "u", Balance: dec("1"), Amount: dec("-2")}}
	require.ErrorIs(t, ee, ledger.ErrNotEnoughFunds)
	require.Equal(t, `ledger: batch entry 3: not enough funds: user "u" has 1, entry needs 2`, ee.Error())
}

// calls runs every Ledger method once and returns their errors by name.
func calls(ctx context.Context, l *ledger.Ledger) map[string]error {
	ne := ledger.NewEntry{AuthorityID: "a", UserID: "u", Amount: dec("1"), Reason: "r"}
	errs := map[string]error{}
	_, errs["CreateEntry"] = l.CreateEntry(ctx, ne)
	_, errs["CreateEntries"] = l.CreateEntries(ctx, []ledger.NewEntry{ne})
	_, errs["UseItem"] = l.UseItem(ctx, "a", "000000000000000000000000")
	_, errs["Wallets"] = l.Wallets(ctx, ledger.WalletQuery{})
	_, errs["Inventory"] = l.Inventory(ctx, ledger.InventoryQuery{})
	_, errs["Entries"] = l.Entries(ctx, ledger.EntryQuery{})
	errs["Verify"] = l.Verify(ctx)
	errs["Health"] = l.Health(ctx)
	return errs
}

func TestClosed(t *testing.T) {
	l, err := ledger.New(memstore.New())
	require.NoError(t, err)
	require.NoError(t, l.Close())
	for name, err := range calls(context.Background(), l) {
		require.ErrorIs(t, err, ledger.ErrClosed, name)
	}
	require.ErrorIs(t, l.Close(), ledger.ErrClosed)
}

func TestCancelledContext(t *testing.T) {
	l := newLedger(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for name, err := range calls(ctx, l) {
		require.ErrorIs(t, err, context.Canceled, name)
	}
	es, err := l.Entries(context.Background(), ledger.EntryQuery{})
	require.NoError(t, err)
	require.Empty(t, es)
}

// failingStore is a memstore whose Update and Ping fail on demand.
type failingStore struct {
	*memstore.Store
	fail    atomic.Bool
	updates atomic.Int64
}

var errDisk = errors.New("disk on fire")

// TryUpdate hides memstore's, which the ledger would call instead of
// Update: the ledger then always calls Update.
func (s *failingStore) TryUpdate(context.Context, func(ledger.Tx) error) (bool, error) {
	return false, nil
}

func (s *failingStore) Update(ctx context.Context, fn func(ledger.Tx) error) error {
	s.updates.Add(1)
	if s.fail.Load() {
		return errDisk
	}
	return s.Store.Update(ctx, fn)
}

func (s *failingStore) Ping(ctx context.Context) error {
	if s.fail.Load() {
		return errDisk
	}
	return s.Store.Ping(ctx)
}

func TestStoreFailure(t *testing.T) {
	ctx := context.Background()
	s := &failingStore{Store: memstore.New()}
	l, err := ledger.New(s)
	require.NoError(t, err)
	defer l.Close()
	s.fail.Store(true)
	_, err = l.CreateEntry(ctx, ledger.NewEntry{AuthorityID: "a", UserID: "u", Amount: dec("1"), Reason: "r"})
	require.ErrorIs(t, err, errDisk)
	require.True(t, strings.HasPrefix(err.Error(), "ledger: store: "), err.Error())
	require.ErrorIs(t, l.Health(ctx), errDisk)
	s.fail.Store(false)
	require.NoError(t, l.Health(ctx))
	_, err = l.CreateEntry(ctx, ledger.NewEntry{AuthorityID: "a", UserID: "u", Amount: dec("1"), Reason: "r"})
	require.NoError(t, err, "the ledger recovers with its store")
}

// TestGroupCommit holds the first commit open so that the writes behind
// it queue, and checks that they share one store transaction in which
// each is judged on its own.
func TestGroupCommit(t *testing.T) {
	ctx := context.Background()
	s := &gatedStore{failingStore: failingStore{Store: memstore.New()}, entered: make(chan struct{}), release: make(chan struct{})}
	l, err := ledger.New(s)
	require.NoError(t, err)
	defer l.Close()
	_, err = l.CreateEntry(ctx, ledger.NewEntry{AuthorityID: "bank", UserID: "u", Amount: dec("10"), Reason: "seed"})
	require.NoError(t, err)

	s.gate.Store(true)
	go func() { // the leader: its commit blocks in the store until released
		_, _ = l.CreateEntry(ctx, ledger.NewEntry{AuthorityID: "bank", UserID: "v", Amount: dec("1"), Reason: "lead"})
	}()
	<-s.entered
	s.gate.Store(false)
	before := s.updates.Load()

	const n = 20
	var wg sync.WaitGroup
	results := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, results[i] = l.CreateEntry(ctx, ledger.NewEntry{AuthorityID: "shop", UserID: "u", Amount: dec("-1"), Reason: fmt.Sprint("spend ", i)})
		}()
	}
	// Let the queue fill, then release the leader.
	require.Eventually(t, func() bool { return l.QueuedForTest() == n }, 5*time.Second, time.Millisecond)
	close(s.release)
	wg.Wait()

	ok, refused := 0, 0
	for _, err := range results {
		switch {
		case err == nil:
			ok++
		case errors.Is(err, ledger.ErrNotEnoughFunds):
			refused++
		default:
			t.Fatal(err)
		}
	}
	require.Equal(t, 10, ok, "each spend judged on its own: ten affordable")
	require.Equal(t, 10, refused, "refusals do not fail their neighbours")
	// One transaction for the leader, released, and one for all twenty.
	require.Equal(t, int64(2), s.updates.Load()-before, "the queued writes share one store transaction")
	require.Equal(t, "u=0 v=1", wallets(t, l, ledger.WalletQuery{}))
	require.NoError(t, l.Verify(ctx))
}

// gatedStore blocks one Update until released.
type gatedStore struct {
	failingStore
	gate     atomic.Bool
	entered  chan struct{}
	release  chan struct{}
	released atomic.Bool
}

func (s *gatedStore) Update(ctx context.Context, fn func(ledger.Tx) error) error {
	if s.gate.Load() && !s.released.Swap(true) {
		close(s.entered)
		<-s.release
	}
	return s.failingStore.Update(ctx, fn)
}

// prefetchStore is a memstore whose transactions read totals in bulk, as
// a database across a network would, counting each kind of read.
type prefetchStore struct {
	*memstore.Store
	bulk, single atomic.Int64
}

type prefetchTx struct {
	ledger.Tx
	s *prefetchStore
}

// TryUpdate hides memstore's, which would bypass prefetchTx.
func (s *prefetchStore) TryUpdate(context.Context, func(ledger.Tx) error) (bool, error) {
	return false, nil
}

func (s *prefetchStore) Update(ctx context.Context, fn func(ledger.Tx) error) error {
	return s.Store.Update(ctx, func(tx ledger.Tx) error { return fn(prefetchTx{tx, s}) })
}

func (t prefetchTx) Total(ctx context.Context, k ledger.TotalKey) (ledger.Total, bool, error) {
	t.s.single.Add(1)
	return t.Tx.Total(ctx, k)
}

func (t prefetchTx) TotalsOf(ctx context.Context, keys []ledger.TotalKey) (map[ledger.TotalKey]ledger.Total, error) {
	t.s.bulk.Add(1)
	out := map[ledger.TotalKey]ledger.Total{}
	for _, k := range keys {
		v, ok, err := t.Tx.Total(ctx, k)
		if err != nil {
			return nil, err
		}
		if ok {
			out[k] = v
		}
	}
	return out, nil
}

// TestTotalsPrefetch: a store that reads totals in bulk gets one bulk
// read per commit and no single reads, and the rules hold on what it
// returned.
func TestTotalsPrefetch(t *testing.T) {
	ctx := context.Background()
	s := &prefetchStore{Store: memstore.New()}
	var clock atomic.Int64
	clock.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	l, err := ledger.New(s, ledger.WithClock(func() time.Time { return time.Unix(0, clock.Load()) }))
	require.NoError(t, err)
	defer l.Close()
	_, err = l.CreateEntries(ctx, []ledger.NewEntry{
		{AuthorityID: "bank", UserID: "u", Amount: dec("10"), Reason: "in"},
		{AuthorityID: "bank", UserID: "v", Amount: dec("3"), Reason: "in"},
		{AuthorityID: "shop", UserID: "u", Amount: dec("-4"), Reason: "out"},
	})
	require.NoError(t, err)
	_, err = l.CreateEntry(ctx, ledger.NewEntry{AuthorityID: "shop", UserID: "v", Amount: dec("-3.01"), Reason: "too much"})
	require.ErrorIs(t, err, ledger.ErrNotEnoughFunds, "the funds check reads the prefetched total")
	e, err := l.CreateEntry(ctx, ledger.NewEntry{AuthorityID: "shop", UserID: "u", Amount: dec("-6"), Reason: "all"})
	require.NoError(t, err)
	requireDecimalString(t, "0", e.Balance.String())
	require.Equal(t, int64(3), s.bulk.Load(), "one bulk read per commit")
	require.Zero(t, s.single.Load(), "no total read one by one")
	require.Equal(t, "u=0 v=3", wallets(t, l, ledger.WalletQuery{}))
	require.Equal(t, "u=-10", wallets(t, l, ledger.WalletQuery{AuthorityIDs: []string{"shop"}}))

	// A capture's and a release's totals are those of their hold's
	// wallet, read in the same bulk read (on a database, locked in order
	// with the group's others, see pgstore).
	h1, err := l.Hold(ctx, ledger.NewHold{AuthorityID: "desk", UserID: "v", Amount: dec("2"), Reason: "h1"})
	require.NoError(t, err)
	h2, err := l.Hold(ctx, ledger.NewHold{AuthorityID: "desk", UserID: "v", Amount: dec("1"), Reason: "h2"})
	require.NoError(t, err)
	_, err = l.Capture(ctx, "desk", h1.ID, ledger.Capture{Amount: dec("1.5")})
	require.NoError(t, err)
	_, err = l.Release(ctx, "desk", h2.ID)
	require.NoError(t, err)
	_, err = l.Capture(ctx, "desk", "no-such-hold", ledger.Capture{})
	require.ErrorIs(t, err, ledger.ErrNotFound)
	require.Zero(t, s.single.Load(), "a capture or release reads no total one by one")
	require.Equal(t, "u=0 v=1.5", wallets(t, l, ledger.WalletQuery{}))
	b, err := l.Balance(ctx, "v", "")
	require.NoError(t, err)
	requireDecimalString(t, "0", b.Held.String())

	// So are a reversal's (of both wallets, for a transfer's entry) and
	// a sweep's, of the wallets whose holds are due.
	tr, err := l.Transfer(ctx, ledger.NewTransfer{AuthorityID: "desk", FromUserID: "v", ToUserID: "w", Amount: dec("1"), Reason: "t"})
	require.NoError(t, err)
	_, err = l.Reverse(ctx, "desk", tr.To.ID, "undo")
	require.NoError(t, err)
	credit, err := l.CreateEntry(ctx, ledger.NewEntry{AuthorityID: "bank", UserID: "v", Amount: dec("2"), Reason: "in"})
	require.NoError(t, err)
	_, err = l.Reverse(ctx, "bank", credit.ID, "undo")
	require.NoError(t, err)
	_, err = l.CreateEntry(ctx, ledger.NewEntry{AuthorityID: "bank", UserID: "w", Amount: dec("1"), Reason: "in"})
	require.NoError(t, err)
	_, err = l.Reverse(ctx, "bank", "no-such-entry", "undo")
	require.ErrorIs(t, err, ledger.ErrNotFound)
	for _, u := range []string{"v", "w"} {
		_, err = l.Hold(ctx, ledger.NewHold{AuthorityID: "desk", UserID: u, Amount: dec("0.5"), Reason: "lapses", Expires: time.Unix(0, clock.Load()).Add(time.Minute)})
		require.NoError(t, err)
	}
	clock.Add(int64(2 * time.Minute))
	n, err := l.ExpireHoldsForTest(ctx)
	require.NoError(t, err)
	require.Equal(t, 2, n, "both holds expired")
	require.Zero(t, s.single.Load(), "a reversal or sweep reads no total one by one")
	require.Equal(t, "u=0 v=1.5 w=1", wallets(t, l, ledger.WalletQuery{}))
	for _, u := range []string{"v", "w"} {
		b, err := l.Balance(ctx, u, "")
		require.NoError(t, err)
		requireDecimalString(t, "0", b.Held.String())
	}
	require.NoError(t, l.Verify(ctx))
}

func requireDecimalString(t *testing.T, want, got string) {
	t.Helper()
	require.True(t, dec(want).Equal(dec(got)), "got %s, want %s", got, want)
}

// TestIDsFollowAnotherLedgersClock: two ledgers share a store, one's
// clock an hour ahead of the other's. Whichever writes, a wallet's new
// entry sorts after its last one: the later-clocked ledger's entries
// move the other's IDs forward, for every wallet after.
func TestIDsFollowAnotherLedgersClock(t *testing.T) {
	ctx := context.Background()
	s := memstore.New()
	base := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	fast, err := ledger.New(s, ledger.WithClock(func() time.Time { return base.Add(time.Hour) }))
	require.NoError(t, err)
	slow, err := ledger.New(s, ledger.WithClock(func() time.Time { return base }))
	require.NoError(t, err)
	e1, err := slow.CreateEntry(ctx, ledger.NewEntry{AuthorityID: "a", UserID: "u", Amount: dec("1"), Reason: "r"})
	require.NoError(t, err)
	e2, err := fast.CreateEntry(ctx, ledger.NewEntry{AuthorityID: "a", UserID: "u", Amount: dec("1"), Reason: "r"})
	require.NoError(t, err)
	require.Less(t, e1.ID, e2.ID)
	for range 3 {
		e3, err := slow.CreateEntry(ctx, ledger.NewEntry{AuthorityID: "a", UserID: "u", Amount: dec("1"), Reason: "r"})
		require.NoError(t, err)
		require.Less(t, e2.ID, e3.ID, "after the fast ledger's entry")
		require.True(t, e3.CreatedOn.Equal(e2.CreatedOn), "stamped at the instant it follows")
		e2 = e3
	}
	other, err := slow.CreateEntry(ctx, ledger.NewEntry{AuthorityID: "a", UserID: "v", Amount: dec("1"), Reason: "r"})
	require.NoError(t, err)
	require.Greater(t, other.ID, e2.ID, "the slow ledger's IDs moved forward")
	es, err := slow.Entries(ctx, ledger.EntryQuery{UserIDs: []string{"u"}})
	require.NoError(t, err)
	require.Len(t, es, 5)
	require.True(t, slices.IsSortedFunc(es, func(a, b ledger.Entry) int { return strings.Compare(a.ID, b.ID) }))
	require.NoError(t, slow.Verify(ctx))
}

// updateCounter counts the store transactions that commit writes; its
// transactions are memstore's own, SavepointTx included.
type updateCounter struct {
	*memstore.Store
	updates atomic.Int32
}

func (s *updateCounter) Update(ctx context.Context, fn func(ledger.Tx) error) error {
	s.updates.Add(1)
	return s.Store.Update(ctx, fn)
}

// TestGroupUndoesARefusedRequestOnly: in one group commit over memstore,
// whose transaction the ledger writes through as it goes, a transfer
// refused after its first entry was written (the receiver's cap) leaves
// nothing behind, and the requests around it commit.
func TestGroupUndoesARefusedRequestOnly(t *testing.T) {
	ctx := context.Background()
	s := &updateCounter{Store: memstore.New()}
	l, err := ledger.New(s, ledger.WithGroupCommit(64, 50*time.Millisecond))
	require.NoError(t, err)
	t.Cleanup(func() { _ = l.Close() })
	_, err = l.CreateEntry(ctx, ledger.NewEntry{AuthorityID: "bank", UserID: "src", Amount: dec("10"), Reason: "seed"})
	require.NoError(t, err)
	one := dec("1")
	require.NoError(t, l.SetLimits(ctx, "bank", ledger.WalletLimits{UserID: "capped", Cap: &one}))
	before := s.updates.Load()

	const credits = 8
	var (
		wg          sync.WaitGroup
		start       = make(chan struct{})
		transferErr error
		creditErrs  [credits]error
	)
	wg.Add(credits + 1)
	go func() {
		defer wg.Done()
		<-start
		_, transferErr = l.Transfer(ctx, ledger.NewTransfer{AuthorityID: "bank", FromUserID: "src", ToUserID: "capped", Amount: dec("5"), Reason: "over the cap"})
	}()
	for i := range credits {
		go func() {
			defer wg.Done()
			<-start
			_, creditErrs[i] = l.CreateEntry(ctx, ledger.NewEntry{AuthorityID: "bank", UserID: fmt.Sprintf("u%d", i), Amount: dec("2"), Reason: "credit"})
		}()
	}
	close(start)
	wg.Wait()

	require.ErrorIs(t, transferErr, ledger.ErrCapExceeded)
	for i, err := range creditErrs {
		require.NoError(t, err, "credit %d", i)
	}
	require.Less(t, s.updates.Load()-before, int32(credits+1), "the writes were not grouped: the test proves nothing")
	b, err := l.Balance(ctx, "src", "")
	require.NoError(t, err)
	requireDec(t, "10", b.Total, "the refused transfer's debit is undone")
	b, err = l.Balance(ctx, "capped", "")
	require.NoError(t, err)
	requireDec(t, "0", b.Total)
	es, err := l.Entries(ctx, ledger.EntryQuery{})
	require.NoError(t, err)
	require.Len(t, es, 1+credits, "the seed and the credits, nothing of the transfer")
	for _, e := range es {
		require.Empty(t, e.TransferID)
	}
	n := 0
	for c, err := range l.Changes(ctx, ledger.ChangeQuery{}) {
		require.NoError(t, err)
		require.NotEqual(t, "", c.Cursor)
		n++
	}
	require.Equal(t, 2+credits, n, "seed, limits and the credits' changes only")
	require.NoError(t, l.Verify(ctx))
}

func requireDec(t *testing.T, want string, got decimal.Decimal, msgAndArgs ...any) {
	t.Helper()
	if !dec(want).Equal(got) {
		require.Fail(t, fmt.Sprintf("got %s, want %s", got, want), msgAndArgs...)
	}
}
