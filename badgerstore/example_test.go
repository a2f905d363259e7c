package badgerstore_test

import (
	"context"
	"fmt"
	"log"
	"os"

	"github.com/shopspring/decimal"

	"github.com/walletledger/ledger"
	"github.com/walletledger/ledger/badgerstore"
)

func ExampleOpen() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "wallet")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	// Durable by default: a write that returned is on disk.
	s, err := badgerstore.Open(dir)
	if err != nil {
		log.Fatal(err)
	}
	l, err := ledger.New(s)
	if err != nil {
		log.Fatal(err)
	}
	if _, err := l.CreateEntry(ctx, ledger.NewEntry{
		AuthorityID: "bank", UserID: "alice", Amount: decimal.NewFromInt(10), Reason: "payday",
	}); err != nil {
		log.Fatal(err)
	}
	if err := l.Close(); err != nil { // closes the store too
		log.Fatal(err)
	}

	// Open it again: everything is there.
	s, err = badgerstore.Open(dir)
	if err != nil {
		log.Fatal(err)
	}
	l, err = ledger.New(s)
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()
	ws, err := l.Wallets(ctx, ledger.WalletQuery{UserIDs: []string{"alice"}})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(ws[0].UserID, ws[0].Total)
	// Output: alice 10
}
