package pgstore_test

import (
	"math/big"
	"testing"

	"github.com/shopspring/decimal"
	"pgregory.net/rapid"

	"github.com/walletledger/ledger/pgstore"
)

// TestEncDecimal checks that the numeric input pgstore writes for a
// decimal is the text decimal's own formatting gives, keeping its scale,
// for coefficients that fit in an int64 (formatted on a fast path) and
// for those that do not.
func TestEncDecimal(t *testing.T) {
	want := func(d decimal.Decimal) string {
		if e := d.Exponent(); e < 0 {
			return d.StringFixed(-e)
		}
		return d.String()
	}
	rapid.Check(t, func(rt *rapid.T) {
		var c *big.Int
		switch rapid.IntRange(0, 3).Draw(rt, "size") {
		case 0:
			c = big.NewInt(rapid.Int64Range(-1000, 1000).Draw(rt, "small"))
		case 1:
			c = big.NewInt(rapid.Int64().Draw(rt, "int64"))
		case 2:
			// Around the edge of 18 digits.
			c = big.NewInt(rapid.Int64Range(-1_999_999_999_999_999_999>>1, 1_999_999_999_999_999_999>>1).Draw(rt, "edge"))
		default:
			c = new(big.Int).Mul(big.NewInt(rapid.Int64().Draw(rt, "hi")), big.NewInt(rapid.Int64().Draw(rt, "lo")))
		}
		exp := rapid.Int32Range(-25, 4).Draw(rt, "exp")
		d := decimal.NewFromBigInt(c, exp)
		if got, w := pgstore.EncDecimal(d), want(d); got != w {
			rt.Fatalf("coefficient %s, exponent %d: got %q, want %q", c, exp, got, w)
		}
	})
	for _, tc := range []struct {
		name string
		d    decimal.Decimal
		want string
	}{
		{"scale kept", decimal.New(150, -2), "1.50"},
		{"below one", decimal.New(-5, -2), "-0.05"},
		{"zero with scale", decimal.New(0, -3), "0.000"},
		{"integer", decimal.New(-42, 0), "-42"},
		{"positive exponent", decimal.New(5, 3), "5000"},
		{"nineteen digits", decimal.New(-1_000_000_000_000_000_000, -2), "-10000000000000000.00"},
	} {
		if got := pgstore.EncDecimal(tc.d); got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.name, got, tc.want)
		}
	}
}
