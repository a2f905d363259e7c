package main

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/shopspring/decimal"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/walletledger/ledger"
)

// chromiumPath is Debian's chromium, which .ci/run installs.
const chromiumPath = "/usr/bin/chromium"

// screenshotEnv names the file the browser test writes its screenshot
// of the console to, when set (docs/console.png is one).
const screenshotEnv = "WALLETD_CONSOLE_SCREENSHOT"

// newBrowser starts a headless chromium for the test and returns a
// context for its first tab. Without chromium the test is skipped,
// unless CI is set: there, a missing browser is a failure.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("CI is set and %s is missing (%v): .ci/run installs Debian's chromium package", chromiumPath, err)
		}
		t.Skipf("skipping the browser test: %s is missing; install Debian's chromium package to run it (with CI set, this fails instead)", chromiumPath)
	}
	// The machine's network may be closed: without these flags chromium
	// waits on connections to Google's services.
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-default-apps", true),
		chromedp.Flag("no-proxy-server", true),
		chromedp.Flag("metrics-recording-only", true),
		chromedp.Flag("mute-audio", true),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
	})
	// The first Run starts the browser, on a context without a deadline,
	// since the browser lives as long as that context.
	require.NoError(t, chromedp.Do(ctx), "start chromium")
	return ctx
}

// within runs actions on tab with a deadline, and fails the test with
// what step names if they fail.
func within(t *testing.T, tab context.Context, step string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(tab, 20*time.Second)
	defer cancel()
	require.NoError(t, chromedp.Do(ctx, actions...), step)
}

func text(t *testing.T, tab context.Context, sel string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(tab, 20*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
	require.NoError(t, err, "text of %s", sel)
	return strings.TrimSpace(s)
}

// TestConsoleBrowser drives the console in chromium as an operator
// would: log in, find a user, read a balance, refund an entry with a
// reason and the confirmation, see the balance change and the live feed,
// open beforehand, show the reversal as it happens. A form posted
// without its CSRF token is refused and changes nothing.
func TestConsoleBrowser(t *testing.T) {
	browser := newBrowser(t)
	env := newTestEnv(t, envOptions{})
	secret := createTestOperator(t, env.opDir, "alice")
	shop := env.newAuthority("shop")
	l := env.srv.ledger
	ctx := context.Background()

	// A customer with a top-up, two purchases through the v1 API, a
	// pending order (a hold), an item and a wallet in euros.
	requireEntry(t, shop.createEntry("u1", 100, "top-up", nil).body["entry"], false)
	purchase := requireEntry(t, shop.createEntry("u1", -30, "bought a hat", nil).body["entry"], false)["entry_id"].(string)
	shop.createEntry("u1", -5, "bought a soda", map[string]any{"name": "Soda Can"})
	_, err := l.Hold(ctx, ledger.NewHold{AuthorityID: shop.authorityID, UserID: "u1", Amount: decimal.NewFromInt(15), Reason: "order 1042, awaiting payment"})
	require.NoError(t, err)
	mustEntry(t, l, ledger.NewEntry{AuthorityID: shop.authorityID, UserID: "u1", Currency: "EUR", Amount: decimal.NewFromInt(12), Reason: "voucher"})
	base := env.ts.URL

	// Log in.
	within(t, browser, "log in",
		chromedp.Navigate(base+"/console/"),
		chromedp.WaitVisible(chromedp.CSS("#name")),
		chromedp.SendKeys(chromedp.CSS("#name"), "alice"),
		chromedp.SendKeys(chromedp.CSS("#secret"), secret),
		chromedp.Click(chromedp.CSS("#login")),
		chromedp.WaitVisible(chromedp.CSS("#user-id")),
	)
	// Find the user and read the balance: 100 - 30 - 5 = 65, 15 held.
	within(t, browser, "find the user",
		chromedp.SendKeys(chromedp.CSS("#user-id"), "u1"),
		chromedp.Click(chromedp.CSS("#find")),
		chromedp.WaitVisible(chromedp.CSS("#balances")),
	)
	const defaultRow = `#balances tr[data-currency=""]`
	assert.Equal(t, "65", text(t, browser, defaultRow+" .total"))
	assert.Equal(t, "50", text(t, browser, defaultRow+" .available"))

	// Open the live feed in a second tab, and wait for its stream.
	live, cancelLive := chromedp.NewContext(browser)
	defer cancelLive()
	// As for the first tab: the tab lives as long as the context of its
	// first Run, which must have no deadline.
	require.NoError(t, chromedp.Do(live), "open a second tab")
	within(t, live, "open the live feed",
		chromedp.Navigate(base+"/console/live"),
		chromedp.WaitVisible(chromedp.CSS("#changes")),
		chromedp.Poll[chromedp.Void](`document.getElementById("live-status").textContent === "live"`, chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(15*time.Second)),
	)

	// Refund the hat: the confirmation page asks for a reason and the
	// box, which the server checks too.
	within(t, browser, "refund the hat",
		chromedp.Click(chromedp.CSS("#entry-"+purchase+" a.refund")),
		chromedp.WaitVisible(chromedp.CSS("#reason")),
		chromedp.SendKeys(chromedp.CSS("#reason"), "hat never arrived"),
		chromedp.Click(chromedp.CSS("#confirm")),
		chromedp.Click(chromedp.CSS("#submit")),
		chromedp.WaitVisible(chromedp.CSS(".flash")),
	)
	assert.Contains(t, text(t, browser, ".flash"), "Refunded entry "+purchase)
	assert.Equal(t, "95", text(t, browser, defaultRow+" .total"), "the balance after the refund")

	es, err := l.Entries(ctx, ledger.EntryQuery{UserIDs: []string{"u1"}, Reverse: true, Limit: 1})
	require.NoError(t, err)
	reversal := es[0]
	require.Equal(t, purchase, reversal.Reverses)
	assert.Equal(t, "console: operator alice: hat never arrived", reversal.Reason)

	// The live tab shows the reversal, pushed to it, at the top.
	within(t, live, "see the reversal in the live feed",
		chromedp.Poll[chromedp.Void](`(() => { const r = document.querySelector("#changes tr"); return r && r.textContent.includes("`+reversal.ID+`") && r.textContent.includes("hat never arrived"); })()`,
			chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(15*time.Second)),
	)

	// The screenshot of the user's page, for the README.
	within(t, browser, "show the user's page", chromedp.Navigate(base+"/console/user?id=u1"), chromedp.WaitVisible(chromedp.CSS("#statement")))
	shot, err := chromedp.Run(browser, chromedp.FullScreenshot(100))
	require.NoError(t, err, "screenshot")
	require.Greater(t, len(shot), 1000, "screenshot size")
	if path := os.Getenv(screenshotEnv); path != "" {
		require.NoError(t, os.WriteFile(path, shot, 0o644))
		t.Logf("screenshot written to %s", path)
	}

	// A form posted without its CSRF token is refused, and the deposit
	// stays as it is.
	deposit := requireEntry(t, shop.createEntry("u1", 40, "second top-up", nil).body["entry"], false)["entry_id"].(string)
	within(t, browser, "post a refund without its CSRF token",
		chromedp.Navigate(base+"/console/refund?entry="+deposit),
		chromedp.WaitVisible(chromedp.CSS("#reason")),
		chromedp.SendKeys(chromedp.CSS("#reason"), "forged"),
		chromedp.Click(chromedp.CSS("#confirm")),
		chromedp.Evaluate[chromedp.Void](`document.querySelector('form.box input[name="csrf"]').remove()`),
		chromedp.Click(chromedp.CSS("#submit")),
		chromedp.WaitVisible(chromedp.CSS("#error-status")),
	)
	assert.Equal(t, "403 Forbidden", text(t, browser, "#error-status"))
	es, err = l.Entries(ctx, ledger.EntryQuery{EntryIDs: []string{deposit}})
	require.NoError(t, err)
	require.Len(t, es, 1)
	assert.Empty(t, es[0].ReversedBy, "the deposit was reversed")
	b, err := l.Balance(ctx, "u1", "")
	require.NoError(t, err)
	assert.Equal(t, "135", b.Total.String())
}
