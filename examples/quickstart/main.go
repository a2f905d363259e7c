// Command quickstart walks through the original wallet service SDK's
// examples on an in-memory ledger and prints what each step returns.
package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"strings"

	"github.com/shopspring/decimal"

	"github.com/walletledger/ledger"
	"github.com/walletledger/ledger/memstore"
)

func main() {
	if err := run(context.Background()); err != nil {
		log.Fatal(err)
	}
}

func run(ctx context.Context) error {
	l, err := ledger.New(memstore.New())
	if err != nil {
		return err
	}
	defer l.Close()

	const shop, recycler = "corner-shop", "recycling-center"

	// Add / remove value and items from users' wallets.
	if _, err := l.CreateEntry(ctx, ledger.NewEntry{
		AuthorityID: recycler, UserID: "foobar123",
		Amount: decimal.NewFromInt(99), Reason: "returned a lot of cans",
	}); err != nil {
		return err
	}
	if _, err := l.CreateEntry(ctx, ledger.NewEntry{
		AuthorityID: recycler, UserID: "bobcats9",
		Amount: decimal.NewFromInt(600), Reason: "payday",
	}); err != nil {
		return err
	}
	soda, err := l.CreateEntry(ctx, ledger.NewEntry{
		AuthorityID: shop, UserID: "bobcats9",
		Amount: decimal.NewFromInt(-5), Reason: "bought a soda",
		Item: &ledger.Item{Name: "Soda Can", Data: []byte(`{"internal_id": "001122"}`)},
	})
	if err != nil {
		return err
	}
	fmt.Printf("bobcats9 bought a %s, balance now %s\n", soda.Item.Name, soda.Balance)

	// A user with no entries cannot spend.
	_, err = l.CreateEntry(ctx, ledger.NewEntry{
		AuthorityID: shop, UserID: "newcomer",
		Amount: decimal.NewFromInt(-5), Reason: "bought a soda",
		Item: &ledger.Item{Name: "Soda Can"},
	})
	var nef *ledger.NotEnoughFundsError
	if errors.As(err, &nef) {
		fmt.Printf("Sorry %s cannot afford to buy soda right now (has %s, needs %s)\n", nef.UserID, nef.Balance, nef.Amount.Neg())
	} else {
		return fmt.Errorf("expected not enough funds, got %v", err)
	}

	// Wallet values.
	all, err := l.Wallets(ctx, ledger.WalletQuery{})
	if err != nil {
		return err
	}
	fmt.Println("all wallets:", formatWallets(all))
	mine, err := l.Wallets(ctx, ledger.WalletQuery{UserIDs: []string{"foobar123", "bobcats9"}, AuthorityIDs: []string{shop}})
	if err != nil {
		return err
	}
	fmt.Println("counting only", shop+":", formatWallets(mine))

	// Items.
	inv, err := l.Inventory(ctx, ledger.InventoryQuery{UserIDs: []string{"bobcats9"}})
	if err != nil {
		return err
	}
	for _, it := range inv {
		fmt.Printf("bobcats9 owns %q (used: %t, data: %s)\n", it.Item.Name, it.Item.Used, it.Item.Data)
	}

	// Mark the item used, once.
	used, err := l.UseItem(ctx, shop, soda.ID)
	if err != nil {
		return err
	}
	fmt.Printf("used %q: %t\n", used.Item.Name, used.Item.Used)
	if _, err := l.UseItem(ctx, shop, soda.ID); errors.Is(err, ledger.ErrItemUsed) {
		fmt.Println("using it again:", err)
	}
	unused, err := l.Inventory(ctx, ledger.InventoryQuery{})
	if err != nil {
		return err
	}
	usedItems, err := l.Inventory(ctx, ledger.InventoryQuery{Used: ledger.UsedOnly})
	if err != nil {
		return err
	}
	fmt.Printf("unused items: %d, used items: %d\n", len(unused), len(usedItems))

	if err := l.Health(ctx); err != nil {
		return err
	}
	fmt.Println("ledger healthy")
	return nil
}

func formatWallets(ws []ledger.WalletTotal) string {
	parts := make([]string, len(ws))
	for i, w := range ws {
		parts[i] = fmt.Sprintf("%s=%s", w.UserID, w.Total)
	}
	return "[" + strings.Join(parts, " ") + "]"
}
