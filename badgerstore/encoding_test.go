package badgerstore_test

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"math"
	"math/big"
	"testing"
	"time"

	"github.com/shopspring/decimal"
	"github.com/stretchr/testify/require"

	"github.com/walletledger/ledger"
	"github.com/walletledger/ledger/badgerstore"
)

// requireSameDecimal fails unless got has want's coefficient and
// exponent: the codec keeps 1.50 as 1.50, not 1.5.
func requireSameDecimal(t *testing.T, want, got decimal.Decimal, field string) {
	t.Helper()
	require.Truef(t, want.Exponent() == got.Exponent() && want.Coefficient().Cmp(got.Coefficient()) == 0,
		"%s: got %s (exponent %d), want %s (exponent %d)", field, got, got.Exponent(), want, want.Exponent())
}

// requireSameRecord fails unless got is want as a store keeps it: same
// fields, decimals exactly, CreatedOn the same instant in UTC, item data
// byte for byte.
func requireSameRecord(t *testing.T, want, got ledger.Record) {
	t.Helper()
	require.Equal(t, want.ID, got.ID, "ID")
	require.Equal(t, want.AuthorityID, got.AuthorityID, "AuthorityID")
	require.Equal(t, want.UserID, got.UserID, "UserID")
	if want.CreatedOn.IsZero() {
		require.True(t, got.CreatedOn.IsZero(), "CreatedOn: got %v, want zero", got.CreatedOn)
	} else {
		require.True(t, want.CreatedOn.Equal(got.CreatedOn), "CreatedOn: got %v, want %v", got.CreatedOn, want.CreatedOn)
		require.Equal(t, time.UTC, got.CreatedOn.Location(), "CreatedOn location")
	}
	requireSameDecimal(t, want.Amount, got.Amount, "Amount")
	require.Equal(t, want.Reason, got.Reason, "Reason")
	requireSameDecimal(t, want.Balance, got.Balance, "Balance")
	requireSameDecimal(t, want.AuthorityBalance, got.AuthorityBalance, "AuthorityBalance")
	require.Equal(t, want.IdempotencyKey, got.IdempotencyKey, "IdempotencyKey")
	if want.Item == nil || !want.Item.Used {
		require.Empty(t, got.UseIdempotencyKey, "UseIdempotencyKey of an unused item")
	} else {
		require.Equal(t, want.UseIdempotencyKey, got.UseIdempotencyKey, "UseIdempotencyKey")
	}
	require.Equal(t, want.Currency, got.Currency, "Currency")
	if len(want.Metadata) == 0 {
		require.Nil(t, got.Metadata, "Metadata")
	} else {
		require.Equal(t, want.Metadata, got.Metadata, "Metadata")
	}
	require.Equal(t, want.TransferID, got.TransferID, "TransferID")
	require.Equal(t, want.Reverses, got.Reverses, "Reverses")
	require.Equal(t, want.ReversedBy, got.ReversedBy, "ReversedBy")
	require.Equal(t, want.HoldID, got.HoldID, "HoldID")
	if want.Item == nil {
		require.Nil(t, got.Item, "Item")
		return
	}
	require.NotNil(t, got.Item, "Item")
	require.Equal(t, want.Item.Name, got.Item.Name, "Item.Name")
	require.Equal(t, want.Item.Revoked, got.Item.Revoked, "Item.Revoked")
	require.Equal(t, want.Item.Used, got.Item.Used, "Item.Used")
	if want.Item.Used {
		require.Equal(t, want.Item.UsedBy, got.Item.UsedBy, "Item.UsedBy")
		if want.Item.UsedOn.IsZero() {
			require.True(t, got.Item.UsedOn.IsZero(), "Item.UsedOn: got %v, want zero", got.Item.UsedOn)
		} else {
			require.True(t, want.Item.UsedOn.Equal(got.Item.UsedOn), "Item.UsedOn: got %v, want %v", got.Item.UsedOn, want.Item.UsedOn)
			require.Equal(t, time.UTC, got.Item.UsedOn.Location(), "Item.UsedOn location")
		}
	}
	if len(want.Item.Data) == 0 {
		require.Nil(t, got.Item.Data, "Item.Data")
	} else {
		require.Equal(t, []byte(want.Item.Data), []byte(got.Item.Data), "Item.Data")
	}
}

func bigDecimal(t *testing.T, coefficient string, exp int32) decimal.Decimal {
	t.Helper()
	c, ok := new(big.Int).SetString(coefficient, 10)
	require.True(t, ok)
	return decimal.NewFromBigInt(c, exp)
}

func TestRecordRoundTrip(t *testing.T) {
	at := time.Date(2026, 3, 1, 12, 30, 0, 123456789, time.UTC)
	tests := []struct {
		name string
		r    ledger.Record
	}{
		{"zero record", ledger.Record{}},
		{"plain", ledger.Record{
			Entry: ledger.Entry{
				ID: "18ebdfd4167cf5957da068ee", AuthorityID: "shop", UserID: "alice", CreatedOn: at,
				Amount: decimal.RequireFromString("-1.50"), Reason: "soda", Balance: decimal.RequireFromString("98.50"),
			},
			AuthorityBalance: decimal.RequireFromString("-1.50"),
		}},
		{"item with odd JSON", ledger.Record{
			Entry: ledger.Entry{
				ID: "x", AuthorityID: "a", UserID: "u", CreatedOn: at, Amount: decimal.NewFromInt(5),
				Item: &ledger.Item{Name: "Soda Can", Used: true, Data: json.RawMessage(" [1, 2 ,\n\t{\"a\" : null} ]  ")},
			},
			IdempotencyKey: "order-1",
		}},
		{"item without data", ledger.Record{Entry: ledger.Entry{ID: "y", Item: &ledger.Item{Name: "n"}}}},
		{"used item with its use", ledger.Record{
			Entry: ledger.Entry{ID: "x", CreatedOn: at, Item: &ledger.Item{
				Name: "Soda Can", Used: true, UsedOn: at.Add(time.Hour + 1), UsedBy: "arcade", Data: json.RawMessage(`[1]`),
			}},
			IdempotencyKey: "order-1", UseIdempotencyKey: "use-1",
		}},
		{"used item, use time zero, no key", ledger.Record{Entry: ledger.Entry{ID: "x", Item: &ledger.Item{Name: "n", Used: true, UsedBy: "a"}}}},
		{"used item, use time in another zone", ledger.Record{Entry: ledger.Entry{ID: "x", Item: &ledger.Item{
			Name: "n", Used: true, UsedOn: at.In(time.FixedZone("X", -7200)),
		}}, UseIdempotencyKey: "k"}},
		{"item with empty name", ledger.Record{Entry: ledger.Entry{ID: "y", Item: &ledger.Item{Data: json.RawMessage(`{}`)}}}},
		{"non-UTC time and unicode", ledger.Record{Entry: ledger.Entry{
			ID: "\x00\xff", UserID: "ユーザー", Reason: "naïve ☕", CreatedOn: at.In(time.FixedZone("X", 3600)),
		}}},
		{"before 1970", ledger.Record{Entry: ledger.Entry{CreatedOn: time.Date(1900, 1, 1, 0, 0, 0, 1, time.UTC)}}},
		{"big decimals", ledger.Record{Entry: ledger.Entry{
			Amount:  bigDecimal(t, "123456789012345678901234567890", -8),
			Balance: bigDecimal(t, "-18446744073709551616", 3), // -2^64
		}, AuthorityBalance: bigDecimal(t, "18446744073709551615", -1000)}}, // 2^64-1, the smallest exponent kept
		{"decimal edges", ledger.Record{Entry: ledger.Entry{
			Amount:  decimal.New(math.MinInt64, 1000), // the largest exponent kept
			Balance: decimal.New(0, -5),
		}, AuthorityBalance: decimal.New(math.MaxInt64, 0)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := badgerstore.EncodeRecord(tt.r)
			require.NoError(t, err)
			got, err := badgerstore.DecodeRecord(b)
			require.NoError(t, err)
			requireSameRecord(t, tt.r, got)

			// Every proper prefix is refused, as is a trailing byte.
			for i := range b {
				_, err := badgerstore.DecodeRecord(b[:i])
				require.Errorf(t, err, "decoding the first %d of %d bytes", i, len(b))
			}
			_, err = badgerstore.DecodeRecord(append(b, 0))
			require.Error(t, err, "trailing byte")
		})
	}
}

// TestRecordVersion3 round-trips the fields of wallets in several
// currencies, and encodes equal metadata equally, whatever the map's
// iteration order.
func TestRecordVersion3(t *testing.T) {
	r := ledger.Record{
		Entry: ledger.Entry{
			ID: "18ebdfd4167cf5957da068ee", AuthorityID: "shop", UserID: "alice", Amount: decimal.RequireFromString("-1.50"),
			Item:     &ledger.Item{Name: "Soda Can", Revoked: true},
			Currency: "gems", Metadata: map[string]string{"order": "o-1", "é": "ü\x00", "empty": "", "z": "last"},
			TransferID: "18ebdfd4167cf5957da068ef", Reverses: "18ebdfd4167cf5957da068e0", ReversedBy: "18ebdfd4167cf5957da068f0",
		},
	}
	b, err := badgerstore.EncodeRecord(r)
	require.NoError(t, err)
	got, err := badgerstore.DecodeRecord(b)
	require.NoError(t, err)
	requireSameRecord(t, r, got)
	for range 20 {
		m := map[string]string{}
		for k, v := range r.Metadata {
			m[k] = v
		}
		r.Metadata = m
		again, err := badgerstore.EncodeRecord(r)
		require.NoError(t, err)
		require.Equal(t, b, again, "deterministic encoding")
	}
	r.Metadata = map[string]string{}
	b, err = badgerstore.EncodeRecord(r)
	require.NoError(t, err)
	got, err = badgerstore.DecodeRecord(b)
	require.NoError(t, err)
	require.Nil(t, got.Metadata, "empty metadata is none")
}

func TestDecodedRecordIsFresh(t *testing.T) {
	r := ledger.Record{Entry: ledger.Entry{ID: "e", Item: &ledger.Item{Name: "n", Data: json.RawMessage(`[1]`)}}}
	b, err := badgerstore.EncodeRecord(r)
	require.NoError(t, err)
	got, err := badgerstore.DecodeRecord(b)
	require.NoError(t, err)
	clear(b)
	require.Equal(t, "e", got.ID)
	require.Equal(t, `[1]`, string(got.Item.Data), "decoded data must not alias the input")
}

func TestDecodeRecordRefusesGarbage(t *testing.T) {
	good, err := badgerstore.EncodeRecord(ledger.Record{Entry: ledger.Entry{ID: "e", Amount: decimal.NewFromInt(1)}})
	require.NoError(t, err)
	mutate := func(i int, c byte) []byte {
		b := append([]byte(nil), good...)
		b[i] = c
		return b
	}
	tests := []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"unknown version", mutate(0, 5)},
		{"version 0", mutate(0, 0)},
		{"use time flag in version 1", append([]byte{1, 8}, good[2:]...)},
		{"use time flag without a use", mutate(1, 8)},
		{"unknown flags", append([]byte{3, 0x80, 0x10}, good[2:]...)},
		{"version 3 flag in version 2", append([]byte{2, 0x10}, good[2:]...)},
		{"version 4 flag in version 3", append(append([]byte{3, 0x80, 0x08}, good[2:]...), 1, 'h')},
		{"empty hold ID under its flag", append(append([]byte{4, 0x80, 0x08}, good[2:]...), 0)},
		{"revoked without item", append([]byte{3, 0x80, 0x04}, good[2:]...)},
		{"empty currency under its flag", append(append([]byte{3, 0x10}, good[2:]...), 0)},
		{"metadata keys out of order", append(append([]byte{3, 0x80, 0x02}, good[2:]...), 2, 1, 'b', 0, 1, 'a', 0)},
		{"metadata of no keys", append(append([]byte{3, 0x80, 0x02}, good[2:]...), 0)},
		{"used without item", mutate(1, 2)},
		{"string length beyond the end", mutate(2, 0x7f)},
		{"bad uvarint", append([]byte{1, 0}, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff)},
		{"exponent beyond int32", []byte{1, 4, 0, 0, 0, 1, 0xfe, 0xff, 0xff, 0xff, 0x1f, 1}},
		{"unknown decimal kind", []byte{1, 4, 0, 0, 0, 9}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := badgerstore.DecodeRecord(tt.b)
			require.Error(t, err)
		})
	}
}

func TestEncodeRecordRefusesUnrepresentableTime(t *testing.T) {
	_, err := badgerstore.EncodeRecord(ledger.Record{Entry: ledger.Entry{ID: "e", CreatedOn: time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC)}})
	require.ErrorContains(t, err, "badgerstore:")
	_, err = badgerstore.EncodeRecord(ledger.Record{Entry: ledger.Entry{ID: "e", Item: &ledger.Item{
		Used: true, UsedOn: time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC),
	}}})
	require.ErrorContains(t, err, "UsedOn")
}

// TestDecodeRecordVersion1 decodes a record as the release before item
// uses were recorded encoded it: version 1, and no use fields after the
// idempotency key. Its used item reads as used, with no use recorded.
func TestDecodeRecordVersion1(t *testing.T) {
	at := time.Date(2026, 3, 1, 12, 30, 0, 123456789, time.UTC)
	r := ledger.Record{
		Entry: ledger.Entry{
			ID: "18ebdfd4167cf5957da068ee", AuthorityID: "shop", UserID: "alice", CreatedOn: at,
			Amount: decimal.RequireFromString("-1.50"), Reason: "soda", Balance: decimal.RequireFromString("8.50"),
			Item: &ledger.Item{Name: "Soda Can", Used: true, Data: json.RawMessage(`[1]`)},
		},
		IdempotencyKey: "order-1", AuthorityBalance: decimal.RequireFromString("-1.50"),
	}
	v4, err := badgerstore.EncodeRecord(r)
	require.NoError(t, err)
	// Version 4 of a default-currency record without metadata, links or
	// hold is version 3, and version 2, but for the version byte.
	require.Equal(t, []byte{4, 1 | 2 | 8}, v4[:2])
	v3 := append([]byte{3}, v4[1:]...)
	got, err := badgerstore.DecodeRecord(v3)
	require.NoError(t, err)
	requireSameRecord(t, r, got)
	v2 := append([]byte{2}, v4[1:]...)
	got, err = badgerstore.DecodeRecord(v2)
	require.NoError(t, err)
	requireSameRecord(t, r, got)
	// Version 2 of this record is version 1 followed by the use: no time
	// (flag 8), and UsedBy and the use's key empty (two zero lengths).
	require.Equal(t, []byte{0, 0}, v2[len(v2)-2:])
	v1 := append([]byte{1, 1 | 2}, v2[2:len(v2)-2]...)
	got, err = badgerstore.DecodeRecord(v1)
	require.NoError(t, err)
	requireSameRecord(t, r, got)
	require.True(t, got.Item.UsedOn.IsZero())
	require.Empty(t, got.Item.UsedBy)
	_, err = badgerstore.DecodeRecord(append(v1, 0, 0))
	require.ErrorIs(t, err, badgerstore.ErrCorrupt, "version 1 has no use fields")
}

// FuzzDecodeRecord builds a record from the fuzzed fields and checks it
// round-trips; then it decodes the fuzzed garbage and the encoding with
// one byte changed, which must not panic, and re-encodes whatever
// decodes, which must round-trip.
func FuzzDecodeRecord(f *testing.F) {
	f.Add("18ebdfd4167cf5957da068ee", "shop", "alice", int64(1767225600123456789), int64(-150), int32(-2), "soda",
		true, "Soda Can", []byte(` [1, {"a": null}] `), false, "key", []byte{1, 0}, uint(3), byte(0xff))
	f.Add("", "", "", int64(0), int64(0), int32(0), "", false, "", []byte(nil), false, "", []byte{}, uint(0), byte(0))
	f.Add("\xff", "a", "u", int64(-1), int64(math.MinInt64), int32(math.MaxInt32), "r",
		true, "", []byte("null"), true, "", []byte{1, 7, 0}, uint(1), byte(0x80))
	f.Fuzz(func(t *testing.T, id, auth, user string, nanos, coef int64, exp int32, reason string,
		hasItem bool, name string, data []byte, used bool, idemKey string, garbage []byte, pos uint, c byte) {
		r := ledger.Record{
			Entry: ledger.Entry{
				ID: id, AuthorityID: auth, UserID: user, CreatedOn: time.Unix(0, nanos).UTC(),
				Amount: decimal.New(coef, exp), Reason: reason,
				Balance: decimal.New(coef/3, -exp/2),
			},
			IdempotencyKey:   idemKey,
			AuthorityBalance: decimal.NewFromBigInt(new(big.Int).Mul(big.NewInt(coef), big.NewInt(coef)), exp),
		}
		if hasItem {
			r.Item = &ledger.Item{Name: name, Used: used, Data: data}
		}
		b, err := badgerstore.EncodeRecord(r)
		if exp < -1000 || exp > 1000 || -exp/2 > 1000 {
			require.ErrorContains(t, err, "exponent", "no ledger writes such an exponent")
			return
		}
		require.NoError(t, err)
		got, err := badgerstore.DecodeRecord(b)
		require.NoError(t, err)
		requireSameRecord(t, r, got)

		b[pos%uint(len(b))] ^= c
		for _, in := range [][]byte{garbage, b} {
			r, err := badgerstore.DecodeRecord(in)
			if err != nil {
				continue
			}
			again, err := badgerstore.EncodeRecord(r)
			require.NoError(t, err)
			got, err := badgerstore.DecodeRecord(again)
			require.NoError(t, err)
			requireSameRecord(t, r, got)
		}
	})
}

// TestDecodeRefusesHugeExponent: an exponent no ledger writes is
// corruption; decoding it must fail rather than hand out a value whose
// first use expands to billions of digits.
func TestDecodeRefusesHugeExponent(t *testing.T) {
	r := ledger.Record{Entry: ledger.Entry{
		ID: "18ebe2dd85a4c346781339cc", AuthorityID: "a", UserID: "u",
		CreatedOn: time.Unix(0, 1).UTC(), Amount: decimal.New(7, 900), Reason: "r",
	}}
	b, err := badgerstore.EncodeRecord(r)
	require.NoError(t, err)
	_, err = badgerstore.DecodeRecord(b)
	require.NoError(t, err, "an exponent of 900 is within bounds")
	_, err = badgerstore.EncodeRecord(ledger.Record{Entry: ledger.Entry{ID: r.ID, Amount: decimal.New(7, 1<<30)}})
	require.ErrorContains(t, err, "exponent", "the encoder refuses what the decoder would")
	// The same record with its amount's exponent bytes forged to 2^30.
	i := bytes.Index(b, []byte{0x01, 0x88, 0x0e, 0x07}) // decPos, varint(900), 7
	require.GreaterOrEqual(t, i, 0, "% x", b)
	forged := append(append(append([]byte{}, b[:i+1]...), binary.AppendVarint(nil, 1<<30)...), b[i+3:]...)
	_, err = badgerstore.DecodeRecord(forged)
	require.ErrorContains(t, err, "exponent")
}
