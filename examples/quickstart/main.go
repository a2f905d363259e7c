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

	if err := wallets(ctx, l); err != nil {
		return err
	}

	if err := l.Health(ctx); err != nil {
		return err
	}
	fmt.Println("ledger healthy")
	return nil
}

// wallets shows what the original service could not: a game's coins and
// gems, a cap, a gift from one player to another and a refund.
func wallets(ctx context.Context, l *ledger.Ledger) error {
	const game = "arcade"
	for _, e := range []ledger.NewEntry{
		{AuthorityID: game, UserID: "alice", Currency: "coins", Amount: decimal.NewFromInt(500), Reason: "daily bonus"},
		{AuthorityID: game, UserID: "alice", Currency: "gems", Amount: decimal.NewFromInt(20), Reason: "level up",
			Metadata: map[string]string{"level": "7"}},
	} {
		if _, err := l.CreateEntry(ctx, e); err != nil {
			return err
		}
	}
	// Gems are capped at 25 a player.
	gemCap := decimal.NewFromInt(25)
	for _, u := range []string{"alice", "bob"} {
		if err := l.SetLimits(ctx, game, ledger.WalletLimits{UserID: u, Currency: "gems", Cap: &gemCap}); err != nil {
			return err
		}
	}
	_, err := l.CreateEntry(ctx, ledger.NewEntry{AuthorityID: game, UserID: "alice", Currency: "gems", Amount: decimal.NewFromInt(10), Reason: "quest"})
	var ce *ledger.CapExceededError
	if !errors.As(err, &ce) {
		return fmt.Errorf("expected the gem cap, got %v", err)
	}
	fmt.Printf("alice cannot hold more than %s gems (has %s)\n", ce.Cap, ce.Total)

	// alice gives bob 8 gems.
	gift, err := l.Transfer(ctx, ledger.NewTransfer{AuthorityID: game, FromUserID: "alice", ToUserID: "bob", Currency: "gems",
		Amount: decimal.NewFromInt(8), Reason: "gift", IdempotencyKey: "gift-1"})
	if err != nil {
		return err
	}
	fmt.Printf("gift %s: alice has %s gems, bob %s\n", shortID(gift.ID), gift.From.Balance, gift.To.Balance)

	// bob buys a sword with coins he does not have: refused; alice buys
	// one, and the shop refunds it.
	sword := ledger.NewEntry{AuthorityID: game, UserID: "bob", Currency: "coins", Amount: decimal.NewFromInt(-120), Reason: "sword",
		Item: &ledger.Item{Name: "Sword"}}
	if _, err := l.CreateEntry(ctx, sword); !errors.Is(err, ledger.ErrNotEnoughFunds) {
		return fmt.Errorf("expected not enough funds, got %v", err)
	}
	sword.UserID = "alice"
	bought, err := l.CreateEntry(ctx, sword)
	if err != nil {
		return err
	}
	refund, err := l.Reverse(ctx, game, bought.ID, "refund: wrong sword")
	if err != nil {
		return err
	}
	fmt.Printf("refunded %s coins to alice\n", refund[0].Amount)
	if _, err := l.UseItem(ctx, game, bought.ID); errors.Is(err, ledger.ErrItemRevoked) {
		fmt.Println("the refunded sword:", err)
	}

	for _, u := range []string{"alice", "bob"} {
		bs, err := l.Balances(ctx, u)
		if err != nil {
			return err
		}
		var parts []string
		for _, b := range bs {
			cur := b.Currency
			if cur == "" {
				cur = "(default)"
			}
			parts = append(parts, fmt.Sprintf("%s=%s", cur, b.Total))
		}
		fmt.Printf("%s's wallets: %s\n", u, strings.Join(parts, " "))
	}
	return nil
}

// shortID shortens an entry ID for printing.
func shortID(id string) string { return id[:8] + "…" }

func formatWallets(ws []ledger.WalletTotal) string {
	parts := make([]string, len(ws))
	for i, w := range ws {
		parts[i] = fmt.Sprintf("%s=%s", w.UserID, w.Total)
	}
	return "[" + strings.Join(parts, " ") + "]"
}
