// Command mkv4 wrote export-v4.jsonl: an export by the last release
// before holds, run at commit ae71656 with
//
//	go run ./testdata/mkv4 > testdata/export-v4.jsonl
//
// (testdata is outside the build; it is kept to say how the stream was
// made).
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/shopspring/decimal"

	"github.com/walletledger/ledger"
	"github.com/walletledger/ledger/memstore"
)

func main() {
	ctx := context.Background()
	now := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { now = now.Add(time.Millisecond + 7); return now }
	l, err := ledger.New(memstore.New(), ledger.WithClock(clock))
	check(err)
	d := decimal.RequireFromString
	var last ledger.Entry
	for i := range 30 {
		ne := ledger.NewEntry{AuthorityID: fmt.Sprint("auth-", i%3), UserID: fmt.Sprint("user-", i%5),
			Currency: []string{"", "gems", "coins"}[i%3], Amount: d(fmt.Sprintf("%d.%02d", 20+i, i)), Reason: fmt.Sprint("deposit ", i)}
		if i%4 == 0 {
			ne.Item = &ledger.Item{Name: fmt.Sprint("item ", i), Data: []byte(fmt.Sprintf(`[%d, {"k": "v"}]`, i))}
		}
		if i%5 == 0 {
			ne.IdempotencyKey = fmt.Sprint("key-", i)
			ne.Metadata = map[string]string{"order": fmt.Sprint(i)}
		}
		last, err = l.CreateEntry(ctx, ne)
		check(err)
		if i%8 == 0 {
			_, err = l.UseItem(ctx, "arcade", last.ID, ledger.UseIdempotencyKey(fmt.Sprint("use-", i)))
			check(err)
		}
	}
	capV := d("500")
	check(l.SetLimits(ctx, "bank", ledger.WalletLimits{UserID: "user-1", Currency: "gems", Floor: d("-10"), Cap: &capV}))
	check(l.SetLimits(ctx, "bank", ledger.WalletLimits{UserID: "user-9", Floor: d("-3")}))
	t, err := l.Transfer(ctx, ledger.NewTransfer{AuthorityID: "auth-0", FromUserID: "user-0", ToUserID: "user-9", Amount: d("5.5"),
		Reason: "gift", IdempotencyKey: "gift-1", Metadata: map[string]string{"note": "é"}})
	check(err)
	_, err = l.Reverse(ctx, "auth-0", t.To.ID, "gift returned")
	check(err)
	e, err := l.CreateEntry(ctx, ledger.NewEntry{AuthorityID: "shop", UserID: "user-2", Amount: d("-3"), Reason: "soda",
		Item: &ledger.Item{Name: "Soda"}})
	check(err)
	_, err = l.Reverse(ctx, "shop", e.ID, "refund")
	check(err)
	_, err = l.CreateEntry(ctx, ledger.NewEntry{AuthorityID: "shop", UserID: "user-9", Amount: d("-2"), Reason: "on credit"})
	check(err)
	check(l.Verify(ctx))
	check(l.Export(ctx, os.Stdout))
}

func check(err error) {
	if err != nil {
		panic(err)
	}
}
