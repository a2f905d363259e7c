package ledger

import "github.com/shopspring/decimal"

// add returns a.Add(b): the same coefficient and exponent. When the
// exponents agree and both coefficients have at most 18 digits, as the
// amounts and totals of most wallets do, it adds them as int64s (their
// sum cannot overflow), which costs less than Add's big.Int arithmetic;
// a zero a, the total of a new wallet, gives b itself where Add would
// give b's coefficient and exponent.
func add(a, b decimal.Decimal) decimal.Decimal {
	if e := a.Exponent(); e == b.Exponent() && a.NumDigits() <= 18 && b.NumDigits() <= 18 {
		return decimal.New(a.CoefficientInt64()+b.CoefficientInt64(), e)
	}
	if a.IsZero() && a.Exponent() >= b.Exponent() {
		return b
	}
	return a.Add(b)
}
