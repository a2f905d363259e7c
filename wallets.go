package ledger

import (
	"context"
	"maps"
	"slices"

	"github.com/shopspring/decimal"
)

// SetLimits sets the limits of the wallet (lim.UserID, lim.Currency) for
// later writes, recording that authorityID set them, and when. A spend is
// refused with [ErrNotEnoughFunds] if it would take the wallet's
// Available below lim.Floor (0 or less: a negative floor is a credit
// line), and a deposit with [ErrCapExceeded] if it would take its Total
// above *lim.Cap (0 or more; nil for no cap). Limits never refuse a write
// that moves a wallet toward them, so lowering a cap or raising a floor
// strands no wallet. The zero WalletLimits for a user and currency are
// the default rule: never below zero, no cap.
func (l *Ledger) SetLimits(ctx context.Context, authorityID string, lim WalletLimits) error {
	if err := l.enter(ctx); err != nil {
		return err
	}
	defer l.mu.RUnlock()
	if err := l.checkID("AuthorityID", authorityID); err != nil {
		return err
	}
	lim, err := l.checkLimits(lim)
	if err != nil {
		return err
	}
	r := newRequest(ctx, opLimits)
	r.authorityID, r.limits = authorityID, lim
	if err := l.commits.submit(r); err != nil {
		return err
	}
	defer r.release()
	return r.err
}

// checkLimits validates lim and returns the copy the ledger keeps.
func (l *Ledger) checkLimits(lim WalletLimits) (WalletLimits, error) {
	if err := l.checkID("UserID", lim.UserID); err != nil {
		return WalletLimits{}, err
	}
	if err := checkCurrency("Currency", lim.Currency); err != nil {
		return WalletLimits{}, err
	}
	floor, err := l.checkAmount("Floor", lim.Floor)
	if err != nil {
		return WalletLimits{}, err
	}
	if floor.Sign() > 0 {
		return WalletLimits{}, invalid("Floor", "%s is above zero: a floor is 0 or less", floor)
	}
	lim.Floor = floor
	if lim.Cap != nil {
		c, err := l.checkAmount("Cap", *lim.Cap)
		if err != nil {
			return WalletLimits{}, err
		}
		if c.Sign() < 0 {
			return WalletLimits{}, invalid("Cap", "%s is below zero: a cap is 0 or more", c)
		}
		lim.Cap = &c
	}
	return lim, nil
}

// Balance returns the wallet of userID in currency ("" the default): its
// total, what its active holds hold (see [Ledger.Hold]) and what is
// available, and its limits. A user with nothing in the currency has a
// zero Balance. It reads a running total and the limits, never the
// entries, and of the holds only those that are due at the ledger
// clock's reading but not yet recorded as expired.
func (l *Ledger) Balance(ctx context.Context, userID, currency string) (Balance, error) {
	if err := l.enter(ctx); err != nil {
		return Balance{}, err
	}
	defer l.mu.RUnlock()
	if err := l.checkID("UserID", userID); err != nil {
		return Balance{}, err
	}
	if err := checkCurrency("Currency", currency); err != nil {
		return Balance{}, err
	}
	var b Balance
	now := l.cfg.clock()
	err := l.storeView(ctx, "balance", func(tx ReadTx) error {
		t, _, err := tx.Total(ctx, TotalKey{UserID: userID, Currency: currency})
		if err != nil {
			return err
		}
		held, err := heldNow(ctx, tx, userID, currency, t, now)
		if err != nil {
			return err
		}
		lim, _, err := tx.Limits(ctx, userID, currency)
		if err != nil {
			return err
		}
		b = newBalance(userID, currency, t.Value, held, lim.WalletLimits)
		return nil
	})
	return b, err
}

// Balances returns the user's wallets, one per currency in which the user
// has an entry, a hold, or limits other than the default, sorted by
// currency.
func (l *Ledger) Balances(ctx context.Context, userID string) ([]Balance, error) {
	if err := l.enter(ctx); err != nil {
		return nil, err
	}
	defer l.mu.RUnlock()
	if err := l.checkID("UserID", userID); err != nil {
		return nil, err
	}
	out := []Balance{}
	now := l.cfg.clock()
	err := l.storeView(ctx, "balances", func(tx ReadTx) error {
		totals := map[string]Total{}
		for t, err := range tx.UserTotals(ctx, userID) {
			if err != nil {
				return err
			}
			totals[t.Currency] = t.Total
		}
		limits := map[string]WalletLimits{}
		for s, err := range tx.UserLimits(ctx, userID) {
			if err != nil {
				return err
			}
			if !s.Floor.IsZero() || s.Cap != nil {
				limits[s.Currency] = s.WalletLimits
			}
		}
		currencies := slices.Sorted(maps.Keys(totals))
		for c := range limits {
			if _, ok := totals[c]; !ok {
				currencies = append(currencies, c)
			}
		}
		slices.Sort(currencies)
		for _, c := range currencies {
			t := totals[c]
			held, err := heldNow(ctx, tx, userID, c, t, now)
			if err != nil {
				return err
			}
			out = append(out, newBalance(userID, c, t.Value, held, limits[c]))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

func newBalance(userID, currency string, total, held decimal.Decimal, lim WalletLimits) Balance {
	b := Balance{UserID: userID, Currency: currency, Total: total, Held: held, Available: total, Floor: lim.Floor}
	if held.Sign() != 0 || held.Exponent() < total.Exponent() {
		// Sub of a zero no finer than total would give total, as it is.
		b.Available = total.Sub(held)
	}
	if lim.Cap != nil {
		c := *lim.Cap
		b.Cap = &c
	}
	return b
}

// Transfer moves t.Amount (> 0) in t.Currency from t.FromUserID to
// t.ToUserID: two entries, -Amount and +Amount, written together or not
// at all, both carrying the transfer's ID (the first entry's) and
// t.Metadata. The funds check applies to From and the cap to To; if
// either refuses, nothing is written. With an IdempotencyKey a retry
// returns the first transfer, and one with different fields fails with
// [ErrIdempotencyConflict].
func (l *Ledger) Transfer(ctx context.Context, t NewTransfer) (Transfer, error) {
	if err := l.enter(ctx); err != nil {
		return Transfer{}, err
	}
	defer l.mu.RUnlock()
	t, bytes, err := l.checkTransfer(t)
	if err != nil {
		return Transfer{}, err
	}
	r := newRequest(ctx, opTransfer)
	r.transfer, r.bytes = t, bytes
	es, err := l.commits.runBatch(r)
	if err != nil {
		return Transfer{}, err
	}
	return Transfer{ID: es[0].ID, From: es[0], To: es[1]}, nil
}

// checkTransfer validates t as the two entries it writes, and returns the
// copy the ledger keeps and its size.
func (l *Ledger) checkTransfer(t NewTransfer) (NewTransfer, int, error) {
	if err := l.checkID("FromUserID", t.FromUserID); err != nil {
		return t, 0, err
	}
	if err := l.checkID("ToUserID", t.ToUserID); err != nil {
		return t, 0, err
	}
	if t.FromUserID == t.ToUserID {
		return t, 0, invalid("ToUserID", "the same user as FromUserID")
	}
	ne, err := l.checkNewEntry(NewEntry{
		AuthorityID: t.AuthorityID, UserID: t.FromUserID, Amount: t.Amount, Reason: t.Reason,
		IdempotencyKey: t.IdempotencyKey, Currency: t.Currency, Metadata: t.Metadata,
	})
	if err != nil {
		return t, 0, err
	}
	if ne.Amount.Sign() <= 0 {
		return t, 0, invalid("Amount", "%s: a transfer moves a positive amount", brief(ne.Amount))
	}
	t.Amount, t.Metadata = ne.Amount, ne.Metadata
	return t, 2*entryBytes(&ne) + len(t.ToUserID), nil
}

// Reverse writes the reversal of entry entryID: a new entry for the same
// user and currency with the opposite amount, whose Reverses names the
// original, and sets the original's ReversedBy; for an entry of a
// transfer, both entries are reversed at once (a transfer back). It
// returns the new entries. Only the authority that wrote the original may
// reverse it ([ErrForbidden]); a reversal cannot be reversed
// ([ErrInvalid]); a second reversal fails with [ErrAlreadyReversed]; an
// entry whose item was used cannot be reversed ([ErrItemUsed]), and an
// unused item is revoked ([ErrItemRevoked] for a later UseItem). Limits
// apply to the reversal as to any write: reversing a deposit that was
// spent fails with [ErrNotEnoughFunds]. When it fails, nothing is
// written.
func (l *Ledger) Reverse(ctx context.Context, authorityID, entryID, reason string) ([]Entry, error) {
	if err := l.enter(ctx); err != nil {
		return nil, err
	}
	defer l.mu.RUnlock()
	if err := l.checkID("AuthorityID", authorityID); err != nil {
		return nil, err
	}
	if err := l.checkID("EntryID", entryID); err != nil {
		return nil, err
	}
	if err := checkText("Reason", reason, l.cfg.limits.MaxReasonBytes); err != nil {
		return nil, err
	}
	r := newRequest(ctx, opReverse)
	r.authorityID, r.entryID, r.reason = authorityID, entryID, reason
	r.bytes = 2 * (EntryOverheadBytes + 2*l.cfg.limits.MaxIDBytes + len(reason) + maxCurrencyBytes + maxMetadataKeys*(maxMetadataKeyBytes+maxMetadataValueBytes))
	return l.commits.runBatch(r)
}
