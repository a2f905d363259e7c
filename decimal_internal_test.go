package ledger

import (
	"math"
	"math/big"
	"testing"

	"github.com/shopspring/decimal"
	"pgregory.net/rapid"
)

// add gives what Decimal.Add gives, coefficient and exponent, for any
// pair: at the int64 fast path's edges and past them, and at random.
func TestAddIsDecimalAdd(t *testing.T) {
	check := func(t interface {
		Helper()
		Fatalf(string, ...any)
	}, a, b decimal.Decimal) {
		t.Helper()
		got, want := add(a, b), a.Add(b)
		if got.Exponent() != want.Exponent() || got.Coefficient().Cmp(want.Coefficient()) != 0 {
			t.Fatalf("add(%s, %s) = %se%d, want %se%d", a, b, got.Coefficient(), got.Exponent(), want.Coefficient(), want.Exponent())
		}
	}
	big19 := decimal.New(999_999_999_999_999_999, 0) // 18 digits
	edges := []decimal.Decimal{
		{}, decimal.Zero, decimal.New(0, -2), decimal.New(0, 3), decimal.New(1, -2), decimal.New(-1, -2),
		big19, big19.Neg(), decimal.New(1_000_000_000_000_000_000, 0), decimal.New(math.MaxInt64, 0), decimal.New(math.MinInt64, 0),
		decimal.New(math.MaxInt64, -2), decimal.New(5, 3), decimal.NewFromBigInt(new(big.Int).Lsh(big.NewInt(1), 80), -2),
		decimal.New(12345, -40), decimal.New(12345, 40),
	}
	for _, a := range edges {
		for _, b := range edges {
			check(t, a, b)
		}
	}
	rapid.Check(t, func(t *rapid.T) {
		coef := func(label string) *big.Int {
			c := new(big.Int).SetInt64(rapid.Int64().Draw(t, label))
			if rapid.Bool().Draw(t, label+" wide") {
				c.Mul(c, big.NewInt(rapid.Int64Range(1, math.MaxInt64).Draw(t, label+" factor")))
			}
			return c
		}
		exp := rapid.SampledFrom([]int32{-20, -9, -2, -1, 0, 1, 4}).Draw(t, "exp a")
		a := decimal.NewFromBigInt(coef("a"), exp)
		if rapid.Bool().Draw(t, "same exponent") {
			exp = rapid.SampledFrom([]int32{-20, -9, -2, -1, 0, 1, 4}).Draw(t, "exp b")
		}
		check(t, a, decimal.NewFromBigInt(coef("b"), exp))
	})
}
