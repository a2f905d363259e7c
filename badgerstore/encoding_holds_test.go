package badgerstore_test

import (
	"testing"
	"time"

	"github.com/shopspring/decimal"
	"github.com/stretchr/testify/require"

	"github.com/walletledger/ledger"
	"github.com/walletledger/ledger/badgerstore"
)

// TestRecordVersion4 round-trips Entry.HoldID, and shows that an entry
// without one costs no byte more than in version 3.
func TestRecordVersion4(t *testing.T) {
	r := ledger.Record{Entry: ledger.Entry{
		ID: "18ebdfd4167cf5957da068ee", AuthorityID: "shop", UserID: "alice", Amount: decimal.RequireFromString("-1.50"),
		Currency: "gems", Metadata: map[string]string{"order": "o-1"},
	}}
	plain, err := badgerstore.EncodeRecord(r)
	require.NoError(t, err)
	r.HoldID = "18ebdfd4167cf5957da06800"
	held, err := badgerstore.EncodeRecord(r)
	require.NoError(t, err)
	got, err := badgerstore.DecodeRecord(held)
	require.NoError(t, err)
	requireSameRecord(t, r, got)
	require.Len(t, held, len(plain)+1+len(r.HoldID), "the hold ID is a string under a flag, and nothing without it")
	_, err = badgerstore.DecodeRecord(append([]byte{3}, held[1:]...))
	require.ErrorIs(t, err, badgerstore.ErrCorrupt, "version 3 has no hold")
	v3, err := badgerstore.DecodeRecord(append([]byte{3}, plain[1:]...))
	require.NoError(t, err)
	require.Empty(t, v3.HoldID, "a version 3 record reads with no hold")
}

func requireSameTotal(t *testing.T, want, got ledger.Total) {
	t.Helper()
	requireSameDecimal(t, want.Value, got.Value, "Value")
	require.Equal(t, want.LastEntryID, got.LastEntryID, "LastEntryID")
	if want.Held.IsZero() {
		require.True(t, got.Held.IsZero(), "Held: got %s, want 0", got.Held)
		return
	}
	requireSameDecimal(t, want.Held, got.Held, "Held")
}

func TestTotalRoundTrip(t *testing.T) {
	last := "18ebdfd4167cf5957da068ee"
	tests := []struct {
		name string
		t    ledger.Total
	}{
		{"zero", ledger.Total{}},
		{"value", ledger.Total{Value: dec("98.50"), LastEntryID: last}},
		{"value and held", ledger.Total{Value: dec("98.50"), LastEntryID: last, Held: dec("12.250")}},
		{"held alone", ledger.Total{Held: dec("2.5")}},
		{"negative, big", ledger.Total{Value: dec("-99999999999999999999.99999999"), LastEntryID: last,
			Held: bigDecimal(t, "123456789012345678901234567890", -8)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := badgerstore.EncodeTotal(tt.t)
			require.NoError(t, err)
			got, err := badgerstore.DecodeTotal(b)
			require.NoError(t, err)
			requireSameTotal(t, tt.t, got)
			for i := range b {
				if _, err := badgerstore.DecodeTotal(b[:i]); err == nil {
					// A total without Held is a prefix of one with it;
					// no other prefix decodes.
					require.False(t, tt.t.Held.IsZero(), "the first %d of %d bytes decode", i, len(b))
					without, err := badgerstore.EncodeTotal(ledger.Total{Value: tt.t.Value, LastEntryID: tt.t.LastEntryID})
					require.NoError(t, err)
					require.Len(t, without, i, "the first %d of %d bytes decode", i, len(b))
				}
			}
			_, err = badgerstore.DecodeTotal(append(b, 0))
			require.Error(t, err, "trailing byte")
		})
	}
}

// TestTotalHeldZeroCostsNothing: a total whose Held is zero, however
// written, encodes as format 3 encoded it, so entries of wallets
// without holds write what they did; and a format 3 total reads with
// Held zero.
func TestTotalHeldZeroCostsNothing(t *testing.T) {
	v := ledger.Total{Value: dec("7.25"), LastEntryID: "18ebdfd4167cf5957da068ee"}
	// Format 3: the value, then the last entry ID.
	format3 := append([]byte{1, 3, 0xd5, 0x05, 24}, v.LastEntryID...) // decPos, varint(-2), uvarint(725), len
	for _, held := range []decimal.Decimal{{}, decimal.Zero, dec("0.00")} {
		b, err := badgerstore.EncodeTotal(ledger.Total{Value: v.Value, LastEntryID: v.LastEntryID, Held: held})
		require.NoError(t, err)
		require.Equal(t, format3, b, "Held %s", held)
	}
	got, err := badgerstore.DecodeTotal(format3)
	require.NoError(t, err)
	requireSameTotal(t, v, got)
	require.Equal(t, decimal.Decimal{}, got.Held)
	// A zero stored explicitly is not what the encoder writes.
	_, err = badgerstore.DecodeTotal(append(append([]byte{}, format3...), 0))
	require.ErrorIs(t, err, badgerstore.ErrCorrupt)
}

func requireSameHold(t *testing.T, want, got ledger.HoldRecord) {
	t.Helper()
	require.Equal(t, want.ID, got.ID, "ID")
	require.Equal(t, want.AuthorityID, got.AuthorityID, "AuthorityID")
	require.Equal(t, want.UserID, got.UserID, "UserID")
	require.Equal(t, want.Currency, got.Currency, "Currency")
	requireSameDecimal(t, want.Amount, got.Amount, "Amount")
	require.Equal(t, want.Reason, got.Reason, "Reason")
	if len(want.Metadata) == 0 {
		require.Nil(t, got.Metadata, "Metadata")
	} else {
		require.Equal(t, want.Metadata, got.Metadata, "Metadata")
	}
	for _, f := range []struct {
		name      string
		want, got time.Time
	}{{"CreatedOn", want.CreatedOn, got.CreatedOn}, {"Expires", want.Expires, got.Expires}, {"ClosedOn", want.ClosedOn, got.ClosedOn}} {
		if f.want.IsZero() {
			require.True(t, f.got.IsZero(), "%s: got %v, want zero", f.name, f.got)
			continue
		}
		require.True(t, f.want.Equal(f.got), "%s: got %v, want %v", f.name, f.got, f.want)
		require.Equal(t, time.UTC, f.got.Location(), "%s location", f.name)
	}
	require.Equal(t, want.State, got.State, "State")
	require.Equal(t, want.EntryID, got.EntryID, "EntryID")
	require.Equal(t, want.IdempotencyKey, got.IdempotencyKey, "IdempotencyKey")
}

func TestHoldRoundTrip(t *testing.T) {
	at := time.Date(2026, 3, 1, 12, 30, 0, 123456789, time.UTC)
	full := ledger.HoldRecord{
		Hold: ledger.Hold{
			ID: "18ebdfd4167cf5957da068ee", AuthorityID: "shop", UserID: "alice", Currency: "gems",
			Amount: dec("12.50"), Reason: "naïve ☕", Metadata: map[string]string{"order": "o-1", "é": "ü\x00", "": ""},
			CreatedOn: at, Expires: at.Add(time.Hour + 1), State: ledger.HoldCaptured,
			ClosedOn: at.Add(time.Minute + 7), EntryID: "18ebdfd4167cf5957da068ef",
		},
		IdempotencyKey: "hold-1",
	}
	tests := []struct {
		name string
		h    ledger.HoldRecord
	}{
		{"zero", ledger.HoldRecord{}},
		{"active, never expires", ledger.HoldRecord{Hold: ledger.Hold{
			ID: "18ebdfd4167cf5957da068ee", AuthorityID: "shop", UserID: "alice", Amount: dec("1"), Reason: "r", CreatedOn: at,
		}}},
		{"every field", full},
		{"released", ledger.HoldRecord{Hold: ledger.Hold{ID: "x", Amount: dec("0.01"), State: ledger.HoldReleased, ClosedOn: at}}},
		{"expired", ledger.HoldRecord{Hold: ledger.Hold{ID: "x", Amount: dec("3"), Expires: at, State: ledger.HoldExpired, ClosedOn: at}}},
		{"times in another zone, before 1970", ledger.HoldRecord{Hold: ledger.Hold{
			ID: "x", CreatedOn: time.Date(1900, 1, 1, 0, 0, 0, 1, time.UTC), Expires: at.In(time.FixedZone("X", -7200)),
		}}},
		{"big amount", ledger.HoldRecord{Hold: ledger.Hold{ID: "x", Amount: bigDecimal(t, "18446744073709551616", -1000)}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := badgerstore.EncodeHold(tt.h)
			require.NoError(t, err)
			got, err := badgerstore.DecodeHold(b)
			require.NoError(t, err)
			requireSameHold(t, tt.h, got)
			for i := range b {
				_, err := badgerstore.DecodeHold(b[:i])
				require.Errorf(t, err, "decoding the first %d of %d bytes", i, len(b))
			}
			_, err = badgerstore.DecodeHold(append(b, 0))
			require.Error(t, err, "trailing byte")
		})
	}

	t.Run("deterministic and fresh", func(t *testing.T) {
		b, err := badgerstore.EncodeHold(full)
		require.NoError(t, err)
		for range 20 {
			h := full
			h.Metadata = map[string]string{}
			for k, v := range full.Metadata {
				h.Metadata[k] = v
			}
			again, err := badgerstore.EncodeHold(h)
			require.NoError(t, err)
			require.Equal(t, b, again)
		}
		got, err := badgerstore.DecodeHold(b)
		require.NoError(t, err)
		clear(b)
		requireSameHold(t, full, got)
	})
}

func TestDecodeHoldRefusesGarbage(t *testing.T) {
	good, err := badgerstore.EncodeHold(ledger.HoldRecord{Hold: ledger.Hold{ID: "h", Amount: dec("1")}})
	require.NoError(t, err)
	require.Equal(t, []byte{1, 1}, good[:2], "version 1, no CreatedOn")
	with := func(head []byte, tail ...byte) []byte {
		return append(append(append([]byte{}, head...), good[2:]...), tail...)
	}
	tests := []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"unknown version", with([]byte{2, 1})},
		{"unknown flags", with([]byte{1, 0x81, 0x01})},
		{"unknown state", append(append([]byte{}, good[:len(good)-1]...), 4)},
		{"empty currency under its flag", with([]byte{1, 1 | 8}, 0)},
		{"metadata of no keys", with([]byte{1, 1 | 64}, 0)},
		{"metadata keys out of order", with([]byte{1, 1 | 64}, 2, 1, 'b', 0, 1, 'a', 0)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := badgerstore.DecodeHold(tt.b)
			require.ErrorIs(t, err, badgerstore.ErrCorrupt)
		})
	}
}

func TestEncodeHoldRefuses(t *testing.T) {
	far := time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		name, want string
		h          ledger.HoldRecord
	}{
		{"CreatedOn beyond 2262", "CreatedOn", ledger.HoldRecord{Hold: ledger.Hold{ID: "h", CreatedOn: far}}},
		{"Expires beyond 2262", "Expires", ledger.HoldRecord{Hold: ledger.Hold{ID: "h", Expires: far}}},
		{"ClosedOn beyond 2262", "ClosedOn", ledger.HoldRecord{Hold: ledger.Hold{ID: "h", ClosedOn: far}}},
		{"unknown state", "state", ledger.HoldRecord{Hold: ledger.Hold{ID: "h", State: 9}}},
		{"huge exponent", "exponent", ledger.HoldRecord{Hold: ledger.Hold{ID: "h", Amount: decimal.New(1, 1<<20)}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := badgerstore.EncodeHold(tt.h)
			require.ErrorContains(t, err, tt.want)
		})
	}
}
