package ledger

import (
	"github.com/shopspring/decimal"
)

// WalletLimits bound a wallet, one user's in one currency. The zero value
// is the original service's rule: a wallet never goes below zero and has
// no cap.
type WalletLimits struct {
	UserID, Currency string
	// Floor is the lowest Available a spend may leave: 0 or less. A
	// negative floor is a credit line.
	Floor decimal.Decimal
	// Cap, when set, is the highest Total a deposit may leave: 0 or more.
	Cap *decimal.Decimal
}

// Balance is a wallet's state, as [Ledger.Balance] reads it.
type Balance struct {
	UserID   string          `json:"user_id"`
	Currency string          `json:"currency,omitempty"`
	Total    decimal.Decimal `json:"total"` // sum of the user's entries in the currency
	// Held is what the wallet's active holds reserve (see [Ledger.Hold]).
	Held decimal.Decimal `json:"held"`
	// Available is Total - Held.
	Available decimal.Decimal  `json:"available"`
	Floor     decimal.Decimal  `json:"floor"`
	Cap       *decimal.Decimal `json:"cap,omitempty"`
}

// NewTransfer is what an authority asks [Ledger.Transfer] to write: two
// entries, -Amount for FromUserID and +Amount for ToUserID, in Currency.
type NewTransfer struct {
	AuthorityID, FromUserID, ToUserID, Currency string
	// Amount is > 0: taken from FromUserID, given to ToUserID.
	Amount         decimal.Decimal
	Reason         string
	Metadata       map[string]string
	IdempotencyKey string
}

// Transfer is a written transfer: its two entries, which both carry its
// ID as TransferID.
type Transfer struct {
	ID   string `json:"transfer_id"`
	From Entry  `json:"from"`
	To   Entry  `json:"to"`
}
