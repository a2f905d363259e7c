package ledger

import (
	"testing"

	"github.com/shopspring/decimal"
)

// newBalance skips the subtraction of a zero held amount only where it
// would give Total as it is: Available's digits are those of Total -
// Held in every case.
func TestNewBalanceAvailable(t *testing.T) {
	for _, c := range []struct{ total, held string }{
		{"5", "0"}, {"5.00", "0"}, {"5", "0.00"}, {"5.1", "0.000"}, {"5.000", "0.0"},
		{"5", "1.5"}, {"-2.50", "0.50"}, {"0", "0"}, {"0.00", "0.0000"},
	} {
		total, held := decimal.RequireFromString(c.total), decimal.RequireFromString(c.held)
		got := newBalance("u", "", total, held, WalletLimits{}).Available
		if want := total.Sub(held); got.String() != want.String() || got.Exponent() != want.Exponent() {
			t.Errorf("total %s, held %s: Available %s (exponent %d), want %s (exponent %d)",
				c.total, c.held, got, got.Exponent(), want, want.Exponent())
		}
	}
	if got := newBalance("u", "", decimal.RequireFromString("7.25"), decimal.Decimal{}, WalletLimits{}).Available; got.String() != "7.25" {
		t.Errorf("held zero value: Available %s, want 7.25", got)
	}
}
