package ledger_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/shopspring/decimal"

	"github.com/walletledger/ledger"
	"github.com/walletledger/ledger/memstore"
)

// mustLedger returns a ledger on a new memstore, with a clock that starts
// at noon on 2026-01-01 and ticks one minute per entry so that examples
// print stable times.
func mustLedger(opts ...ledger.Option) *ledger.Ledger {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { now = now.Add(time.Minute); return now }
	l, err := ledger.New(memstore.New(), append([]ledger.Option{ledger.WithClock(clock)}, opts...)...)
	if err != nil {
		panic(err)
	}
	return l
}

func credit(l *ledger.Ledger, auth, user string, amount int64) ledger.Entry {
	e, err := l.CreateEntry(context.Background(), ledger.NewEntry{
		AuthorityID: auth, UserID: user, Amount: decimal.NewFromInt(amount), Reason: "credit",
	})
	if err != nil {
		panic(err)
	}
	return e
}

func ExampleNew() {
	l, err := ledger.New(memstore.New())
	if err != nil {
		fmt.Println(err)
		return
	}
	defer l.Close()
	fmt.Println(l.Health(context.Background()))
	// Output: <nil>
}

func ExampleLedger_CreateEntry() {
	ctx := context.Background()
	l := mustLedger()
	defer l.Close()

	e, err := l.CreateEntry(ctx, ledger.NewEntry{
		AuthorityID: "recycling", UserID: "1", Amount: decimal.NewFromInt(1000), Reason: "payday",
	})
	fmt.Println(e.Amount, e.Balance, err)

	_, err = l.CreateEntry(ctx, ledger.NewEntry{
		AuthorityID: "shop", UserID: "1", Amount: decimal.NewFromInt(-1001), Reason: "bought a car",
	})
	var nef *ledger.NotEnoughFundsError
	if errors.As(err, &nef) {
		fmt.Printf("user %s has %s, cannot spend %s\n", nef.UserID, nef.Balance, nef.Amount.Neg())
	}
	// Output:
	// 1000 1000 <nil>
	// user 1 has 1000, cannot spend 1001
}

// A retry with the same idempotency key returns the first entry and
// charges nothing.
func ExampleLedger_CreateEntry_idempotent() {
	ctx := context.Background()
	l := mustLedger()
	defer l.Close()
	credit(l, "bank", "1", 100)

	buy := ledger.NewEntry{
		AuthorityID: "shop", UserID: "1", Amount: decimal.NewFromInt(-30), Reason: "order 17",
		IdempotencyKey: "order-17",
	}
	first, _ := l.CreateEntry(ctx, buy)
	retry, _ := l.CreateEntry(ctx, buy) // the caller timed out and tried again
	fmt.Println(first.ID == retry.ID, retry.Balance)

	buy.Amount = decimal.NewFromInt(-31)
	_, err := l.CreateEntry(ctx, buy)
	fmt.Println(errors.Is(err, ledger.ErrIdempotencyConflict))
	// Output:
	// true 70
	// true
}

// A gift between two users: two entries, written all or nothing.
func ExampleLedger_CreateEntries() {
	ctx := context.Background()
	l := mustLedger()
	defer l.Close()
	credit(l, "bank", "alice", 15)

	gift := func(amount int64) error {
		_, err := l.CreateEntries(ctx, []ledger.NewEntry{
			{AuthorityID: "gifts", UserID: "alice", Amount: decimal.NewFromInt(-amount), Reason: "gift to bob"},
			{AuthorityID: "gifts", UserID: "bob", Amount: decimal.NewFromInt(amount), Reason: "gift from alice"},
		})
		return err
	}
	fmt.Println(gift(10))
	err := gift(10)
	var ee *ledger.EntryError
	fmt.Println(errors.As(err, &ee), ee.Index, errors.Is(err, ledger.ErrNotEnoughFunds))

	ws, _ := l.Wallets(ctx, ledger.WalletQuery{})
	fmt.Println(ws)
	// Output:
	// <nil>
	// true 0 true
	// [alice=5 bob=10]
}

func ExampleLedger_Wallets() {
	ctx := context.Background()
	l := mustLedger()
	defer l.Close()
	credit(l, "recycling", "1", 900)
	credit(l, "shop", "34", 150000)
	credit(l, "recycling", "34", 5)

	all, _ := l.Wallets(ctx, ledger.WalletQuery{})
	fmt.Println(all)
	named, _ := l.Wallets(ctx, ledger.WalletQuery{UserIDs: []string{"0", "1"}})
	fmt.Println(named)
	mine, _ := l.Wallets(ctx, ledger.WalletQuery{AuthorityIDs: []string{"recycling"}})
	fmt.Println(mine)
	// Output:
	// [1=900 34=150005]
	// [0=0 1=900]
	// [1=900 34=5]
}

// Totals as they stood at an instant are a lookup of the balance recorded
// on each user's last entry before it.
func ExampleLedger_Wallets_asOf() {
	ctx := context.Background()
	l := mustLedger()
	defer l.Close()
	payday := credit(l, "bank", "1", 100)
	credit(l, "shop", "1", -40)

	then, _ := l.Wallets(ctx, ledger.WalletQuery{AsOf: payday.CreatedOn})
	now, _ := l.Wallets(ctx, ledger.WalletQuery{})
	fmt.Println(then, now)
	// Output: [1=100] [1=60]
}

func ExampleLedger_Inventory() {
	ctx := context.Background()
	l := mustLedger()
	defer l.Close()
	credit(l, "bank", "1", 500)
	_, _ = l.CreateEntry(ctx, ledger.NewEntry{
		AuthorityID: "shop", UserID: "1", Amount: decimal.NewFromInt(-100), Reason: "bought sunglasses",
		Item: &ledger.Item{Name: "Cool Shades", Data: []byte(`{"internal_id": "001122", "tags": ["uv400"]}`)},
	})

	items, _ := l.Inventory(ctx, ledger.InventoryQuery{UserIDs: []string{"1"}})
	for _, it := range items {
		fmt.Printf("%s used=%t data=%s\n", it.Item.Name, it.Item.Used, it.Item.Data)
	}
	// Output: Cool Shades used=false data={"internal_id": "001122", "tags": ["uv400"]}
}

func ExampleLedger_UseItem() {
	ctx := context.Background()
	l := mustLedger()
	defer l.Close()
	e, _ := l.CreateEntry(ctx, ledger.NewEntry{
		AuthorityID: "arcade", UserID: "1", Amount: decimal.Zero, Reason: "prize", Item: &ledger.Item{Name: "Token"},
	})

	used, err := l.UseItem(ctx, "arcade", e.ID)
	fmt.Println(used.Item.Used, used.Item.UsedBy, used.Item.UsedOn, err)
	_, err = l.UseItem(ctx, "arcade", e.ID)
	fmt.Println(errors.Is(err, ledger.ErrItemUsed))
	// Output:
	// true arcade 2026-01-01 12:02:00 +0000 UTC <nil>
	// true
}

// A use on behalf of one user, safe to retry: another user's entry is
// not found, and a retry with the same key gets the used entry back.
func ExampleLedger_UseItem_retry() {
	ctx := context.Background()
	l := mustLedger()
	defer l.Close()
	e, _ := l.CreateEntry(ctx, ledger.NewEntry{
		AuthorityID: "arcade", UserID: "alice", Amount: decimal.Zero, Reason: "prize", Item: &ledger.Item{Name: "Token"},
	})

	_, err := l.UseItem(ctx, "arcade", e.ID, ledger.ForUser("bob"))
	fmt.Println(errors.Is(err, ledger.ErrNotFound))
	first, err := l.UseItem(ctx, "arcade", e.ID, ledger.ForUser("alice"), ledger.UseIdempotencyKey("req-7"))
	fmt.Println(first.Item.Used, err)
	retry, err := l.UseItem(ctx, "arcade", e.ID, ledger.ForUser("alice"), ledger.UseIdempotencyKey("req-7"))
	fmt.Println(retry.Item.UsedOn.Equal(first.Item.UsedOn), err)
	_, err = l.UseItem(ctx, "arcade", e.ID, ledger.UseIdempotencyKey("req-8"))
	fmt.Println(errors.Is(err, ledger.ErrItemUsed))
	// Output:
	// true
	// true <nil>
	// true <nil>
	// true
}

// A user's history, page by page; each entry carries the balance after
// it, so the pages read as a statement.
func ExampleLedger_Entries() {
	ctx := context.Background()
	l := mustLedger()
	defer l.Close()
	for _, amount := range []int64{10, 20, -5, 7, -12} {
		credit(l, "bank", "1", amount)
	}

	q := ledger.EntryQuery{UserIDs: []string{"1"}, Limit: 2}
	for page := 1; ; page++ {
		es, _ := l.Entries(ctx, q)
		for _, e := range es {
			fmt.Printf("page %d: %s %3s balance %s\n", page, e.CreatedOn.Format("15:04"), e.Amount, e.Balance)
		}
		if len(es) < q.Limit {
			break
		}
		q.After = es[len(es)-1].ID
	}
	// Output:
	// page 1: 12:01  10 balance 10
	// page 1: 12:02  20 balance 30
	// page 2: 12:03  -5 balance 25
	// page 2: 12:04   7 balance 32
	// page 3: 12:05 -12 balance 20
}

func ExampleLedger_Verify() {
	l := mustLedger()
	defer l.Close()
	credit(l, "bank", "1", 10)
	fmt.Println(l.Verify(context.Background()))
	// Output: <nil>
}

func ExampleLedger_EntriesSeq() {
	ctx := context.Background()
	l := mustLedger(ledger.WithPageSize(2))
	defer l.Close()
	for i := int64(1); i <= 5; i++ {
		credit(l, "bank", "1", i)
	}
	// Newest first, read two entries per store transaction.
	for e, err := range l.EntriesSeq(ctx, ledger.EntryQuery{UserIDs: []string{"1"}, Reverse: true}) {
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Println(e.CreatedOn.Format(time.Kitchen), e.Amount, e.Balance)
	}
	// Output:
	// 12:05PM 5 15
	// 12:04PM 4 10
	// 12:03PM 3 6
	// 12:02PM 2 3
	// 12:01PM 1 1
}

func ExampleErrUnknownOutcome() {
	ctx := context.Background()
	l := mustLedger()
	defer l.Close()
	buy := ledger.NewEntry{AuthorityID: "shop", UserID: "1", Amount: decimal.NewFromInt(3), Reason: "order 17", IdempotencyKey: "order-17"}
	e, err := l.CreateEntry(ctx, buy)
	if errors.Is(err, ledger.ErrUnknownOutcome) {
		// Committed or not: the same key settles it, writing it at most once.
		e, err = l.CreateEntry(ctx, buy)
	}
	again, _ := l.CreateEntry(ctx, buy)
	fmt.Println(err, e.ID == again.ID)
	// Output: <nil> true
}

func ExampleEntryErrors() {
	l := mustLedger()
	defer l.Close()
	_, err := l.CreateEntries(context.Background(), []ledger.NewEntry{
		{AuthorityID: "bank", UserID: "1", Amount: decimal.NewFromInt(1), Reason: "fine"},
		{AuthorityID: "bank", UserID: "", Amount: decimal.NewFromInt(1), Reason: "no user"},
		{AuthorityID: "bank", UserID: "2", Amount: decimal.NewFromInt(1)},
	})
	var list ledger.EntryErrors
	if errors.As(err, &list) {
		for _, e := range list {
			fmt.Println(e.Index, errors.Unwrap(e))
		}
	}
	// Output:
	// 1 ledger: invalid UserID: empty
	// 2 ledger: invalid Reason: empty
}

func ExampleLedger_Balance() {
	ctx := context.Background()
	l := mustLedger()
	defer l.Close()
	for _, e := range []ledger.NewEntry{
		{AuthorityID: "game", UserID: "1", Currency: "gems", Amount: decimal.NewFromInt(30), Reason: "quest"},
		{AuthorityID: "game", UserID: "1", Currency: "coins", Amount: decimal.NewFromInt(500), Reason: "bonus"},
	} {
		if _, err := l.CreateEntry(ctx, e); err != nil {
			fmt.Println(err)
			return
		}
	}
	b, err := l.Balance(ctx, "1", "gems")
	fmt.Println(b.Total, b.Available, b.Floor, b.Cap, err)
	none, _ := l.Balance(ctx, "1", "tickets")
	fmt.Println(none.Total)
	bs, _ := l.Balances(ctx, "1")
	for _, b := range bs {
		fmt.Println(b.Currency, b.Total)
	}
	// Output:
	// 30 30 0 <nil> <nil>
	// 0
	// coins 500
	// gems 30
}

func ExampleLedger_SetLimits() {
	ctx := context.Background()
	l := mustLedger()
	defer l.Close()
	// A credit line of 100 and a cap of 1000.
	ceiling := decimal.NewFromInt(1000)
	if err := l.SetLimits(ctx, "bank", ledger.WalletLimits{UserID: "1", Floor: decimal.NewFromInt(-100), Cap: &ceiling}); err != nil {
		fmt.Println(err)
		return
	}
	e, err := l.CreateEntry(ctx, ledger.NewEntry{AuthorityID: "shop", UserID: "1", Amount: decimal.NewFromInt(-80), Reason: "on credit"})
	fmt.Println(e.Balance, err)
	_, err = l.CreateEntry(ctx, ledger.NewEntry{AuthorityID: "shop", UserID: "1", Amount: decimal.NewFromInt(-30), Reason: "too much"})
	fmt.Println(errors.Is(err, ledger.ErrNotEnoughFunds))
	_, err = l.CreateEntry(ctx, ledger.NewEntry{AuthorityID: "bank", UserID: "1", Amount: decimal.NewFromInt(1081), Reason: "windfall"})
	fmt.Println(err)
	// Output:
	// -80 <nil>
	// true
	// ledger: cap exceeded: user "1" has -80, cap 1000, entry adds 1081
}

func ExampleLedger_Transfer() {
	ctx := context.Background()
	l := mustLedger()
	defer l.Close()
	credit(l, "bank", "alice", 50)
	t, err := l.Transfer(ctx, ledger.NewTransfer{
		AuthorityID: "gifts", FromUserID: "alice", ToUserID: "bob", Amount: decimal.NewFromInt(20),
		Reason: "birthday", IdempotencyKey: "gift-7",
	})
	fmt.Println(t.From.Amount, t.From.Balance, t.To.Amount, t.To.Balance, t.To.TransferID == t.ID, err)
	// Output: -20 30 20 20 true <nil>
}

func ExampleLedger_Reverse() {
	ctx := context.Background()
	l := mustLedger()
	defer l.Close()
	credit(l, "bank", "1", 10)
	buy, _ := l.CreateEntry(ctx, ledger.NewEntry{AuthorityID: "shop", UserID: "1", Amount: decimal.NewFromInt(-4), Reason: "soda",
		Item: &ledger.Item{Name: "Soda"}})
	refund, err := l.Reverse(ctx, "shop", buy.ID, "refund")
	fmt.Println(refund[0].Amount, refund[0].Balance, refund[0].Reverses == buy.ID, err)
	_, err = l.UseItem(ctx, "shop", buy.ID)
	fmt.Println(errors.Is(err, ledger.ErrItemRevoked))
	_, err = l.Reverse(ctx, "shop", buy.ID, "again")
	fmt.Println(errors.Is(err, ledger.ErrAlreadyReversed))
	// Output:
	// 4 10 true <nil>
	// true
	// true
}

// A purchase settled by a payment provider: reserve the price, then take
// it when the provider confirms (or give it back when it declines), and
// refund later with a reversal.
func ExampleLedger_Hold() {
	ctx := context.Background()
	l := mustLedger()
	defer l.Close()
	credit(l, "bank", "alice", 50)

	// 1. Reserve the price while the provider authorises the card.
	h, err := l.Hold(ctx, ledger.NewHold{
		AuthorityID: "shop", UserID: "alice", Amount: decimal.NewFromInt(30), Reason: "order 17",
		Expires: time.Now().Add(15 * time.Minute), IdempotencyKey: "order-17",
	})
	b, _ := l.Balance(ctx, "alice", "")
	fmt.Println(h.State, b.Total, b.Held, b.Available, err)
	// Meanwhile nothing can spend the held value.
	_, err = l.CreateEntry(ctx, ledger.NewEntry{AuthorityID: "arcade", UserID: "alice", Amount: decimal.NewFromInt(-25), Reason: "game"})
	fmt.Println(errors.Is(err, ledger.ErrNotEnoughFunds))

	// 2. The provider confirmed: take the price and grant the item.
	e, err := l.Capture(ctx, "shop", h.ID, ledger.Capture{Item: &ledger.Item{Name: "Sword"}})
	b, _ = l.Balance(ctx, "alice", "")
	fmt.Println(e.Amount, e.HoldID == h.ID, b.Total, b.Held, err)
	_, err = l.Release(ctx, "shop", h.ID)
	var closed *ledger.HoldClosedError
	fmt.Println(errors.Is(err, ledger.ErrHoldClosed), errors.As(err, &closed) && closed.State == ledger.HoldCaptured)

	// 3. Later, a refund is a reversal of the capture's entry.
	refund, err := l.Reverse(ctx, "shop", e.ID, "refund: order 17 returned")
	fmt.Println(refund[0].Amount, refund[0].Balance, err)
	// Output:
	// active 50 30 20 <nil>
	// true
	// -30 true 20 0 <nil>
	// true true
	// 30 50 <nil>
}

// A cache kept in step with the ledger: read the feed from the last
// cursor handled, and resume from it after a restart.
func ExampleLedger_Changes() {
	ctx := context.Background()
	l := mustLedger()
	defer l.Close()
	credit(l, "bank", "alice", 50)
	buy, _ := l.CreateEntry(ctx, ledger.NewEntry{AuthorityID: "shop", UserID: "alice", Amount: decimal.NewFromInt(-20),
		Reason: "sword", Item: &ledger.Item{Name: "Sword"}})

	balances := map[string]decimal.Decimal{} // the cache
	cursor := ""                             // where a restart resumes
	catchUp := func() {
		for c, err := range l.Changes(ctx, ledger.ChangeQuery{After: cursor}) {
			if err != nil {
				fmt.Println(err)
				return
			}
			if c.Kind == ledger.ChangeEntry {
				balances[c.Entry.UserID] = c.Entry.Balance
			}
			fmt.Println(c.Kind, c.AuthorityID)
			cursor = c.Cursor
		}
	}
	catchUp()
	fmt.Println("alice:", balances["alice"])

	// Later writes; the next catch-up reads only them.
	l.UseItem(ctx, "arena", buy.ID)
	credit(l, "bank", "alice", 5)
	catchUp()
	fmt.Println("alice:", balances["alice"])
	// Output:
	// entry bank
	// entry shop
	// alice: 30
	// item_used arena
	// entry bank
	// alice: 35
}
