package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"floodgate/auth"
	"floodgate/keyapi"
)

// keysOpts are the flags shared by every `floodgate keys` subcommand.
type keysOpts struct {
	apiURL     string
	adminToken string
	json       bool
	timeout    time.Duration
}

// newKeysCmd is `floodgate keys ...`, the operator CLI over the admin API
// (keyapi.AdminClient).
func newKeysCmd() *cobra.Command {
	o := &keysOpts{}
	cmd := &cobra.Command{
		Use:   "keys",
		Short: "Manage API keys through the admin API",
		Long: `Create, list, show, revoke, deactivate, activate, rotate and delete API keys,
and show their connection events, through the admin API of a running
floodgate serve or floodgate sidecar (--api-url, --admin-token). Output is a
table; --json prints the raw response data. Every flag can also be set with
its FLOODGATE_* environment variable.`,
	}
	pf := cmd.PersistentFlags()
	pf.StringVar(&o.apiURL, "api-url", "http://127.0.0.1:8081", "base URL of the REST API")
	pf.StringVar(&o.adminToken, "admin-token", "", "admin API bearer token")
	pf.BoolVar(&o.json, "json", false, "print JSON instead of a table")
	pf.DurationVar(&o.timeout, "timeout", 30*time.Second, "timeout of the API call")
	annotateEnv(pf)
	cmd.AddCommand(
		keysCreateCmd(o), keysListCmd(o), keysShowCmd(o),
		keysPatchCmd(o, "revoke", "Revoke a key for good (closes its connections)", keyapi.KeyPatch{Status: keysStatus(auth.StatusRevoked)}),
		keysPatchCmd(o, "deactivate", "Deactivate a key (closes its connections)", keyapi.KeyPatch{Active: keysBool(false)}),
		keysPatchCmd(o, "activate", "Activate a deactivated key", keyapi.KeyPatch{Active: keysBool(true)}),
		keysUpdateCmd(o), keysRotateCmd(o), keysDeleteCmd(o), keysEventsCmd(o),
	)
	return cmd
}

func keysBool(b bool) *bool                 { return &b }
func keysStatus(s auth.Status) *auth.Status { return &s }

// keysRun binds the environment, then calls fn with a client and a context
// bounded by --timeout.
func keysRun(o *keysOpts, fn func(ctx context.Context, c *keyapi.AdminClient, out io.Writer, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		if err := bindEnv(cmd.Flags()); err != nil {
			return err
		}
		if o.adminToken == "" {
			return fmt.Errorf("--admin-token (or FLOODGATE_ADMIN_TOKEN) is required")
		}
		ctx, cancel := context.WithTimeout(cmd.Context(), o.timeout)
		defer cancel()
		return fn(ctx, keyapi.NewAdminClient(o.apiURL, o.adminToken, nil), cmd.OutOrStdout(), args)
	}
}

func keysCreateCmd(o *keysOpts) *cobra.Command {
	var (
		req       keyapi.CreateKeyRequest
		lim       auth.Limits
		quo       auth.Quotas
		expiresAt string
		expiresIn time.Duration
		inactive  bool
	)
	cmd := &cobra.Command{
		Use:   "create --account <wallet>",
		Short: "Create a key; the full key is printed once",
		Args:  cobra.NoArgs,
		RunE: keysRun(o, func(ctx context.Context, c *keyapi.AdminClient, out io.Writer, _ []string) error {
			switch {
			case expiresAt != "" && expiresIn != 0:
				return fmt.Errorf("--expires-at and --expires-in exclude each other")
			case expiresAt != "":
				t, err := time.Parse(time.RFC3339, expiresAt)
				if err != nil {
					return fmt.Errorf("--expires-at %q: want an RFC 3339 time like 2026-01-31T00:00:00Z", expiresAt)
				}
				req.ExpiresAt = &t
			case expiresIn != 0:
				t := time.Now().Add(expiresIn).UTC().Truncate(time.Second)
				req.ExpiresAt = &t
			}
			if lim != (auth.Limits{}) {
				req.Limits = &lim
			}
			if quo != (auth.Quotas{}) {
				req.Quotas = &quo
			}
			if inactive {
				req.Active = keysBool(false)
			}
			ck, err := c.CreateKey(ctx, req)
			if err != nil {
				return err
			}
			return keysPrintCreated(out, o, ck)
		}),
	}
	fs := cmd.Flags()
	fs.StringVar(&req.Account, "account", "", "wallet address (base58 ed25519 public key) owning the key")
	fs.StringVar(&req.Alias, "alias", "", "name of the key, unique per account")
	fs.StringVar(&req.Category, "category", "", "free text: production, staging, ...")
	fs.StringVar(&expiresAt, "expires-at", "", "expiry time (RFC 3339); default never")
	fs.DurationVar(&expiresIn, "expires-in", 0, "expiry as a duration from now, e.g. 720h")
	fs.BoolVar(&inactive, "inactive", false, "create the key deactivated")
	fs.StringSliceVar(&req.Scopes, "scopes", nil, "what the key may subscribe to: market (public sources), account (its account's private sources); default both")
	fs.StringSliceVar(&req.AllowedCIDRs, "allowed-cidrs", nil, "client IPs the key may be used from, e.g. 10.0.0.0/8,2001:db8::/32 (at most 32); default any")
	keysLimitFlags(fs, &lim, &quo)
	_ = cmd.MarkFlagRequired("account")
	annotateEnv(fs)
	return cmd
}

func keysLimitFlags(fs *pflag.FlagSet, lim *auth.Limits, quo *auth.Quotas) {
	fs.Int64Var(&lim.CreditsPerMinute, "credits-per-minute", 0, "credit budget per minute, 1..10000 (0: tier default)")
	fs.Int64Var(&lim.MaxConnections, "max-connections", 0, "concurrent connections (0: tier default)")
	fs.IntVar(&lim.MaxSubscriptions, "max-subscriptions", 0, "subscriptions per connection (0: tier default)")
	fs.Float64Var(&lim.ConnMessagesPerSecond, "conn-messages-per-second", 0, "messages per second per connection (0: tier default)")
	fs.Int64Var(&quo.Total, "quota-total", 0, "lifetime quota in credits (0: none)")
	fs.Int64Var(&quo.Daily, "quota-daily", 0, "daily quota in credits (0: none)")
	fs.Int64Var(&quo.Weekly, "quota-weekly", 0, "weekly quota in credits (0: none)")
	fs.Int64Var(&quo.Monthly, "quota-monthly", 0, "monthly quota in credits (0: none)")
	fs.BoolVar(&quo.Calendar, "calendar", false, "daily, weekly and monthly quotas reset at UTC calendar boundaries (00:00, Monday, the 1st) instead of rolling over 24 h, 7 d, 30 d; --calendar=false switches back")
	fs.Int64Var(&quo.DeliveredDaily, "quota-delivered-daily", 0, "messages delivered per UTC day; public subscriptions end when used up (0: none)")
}

func keysListCmd(o *keysOpts) *cobra.Command {
	var account, category, status string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List keys with their usage",
		Args:  cobra.NoArgs,
		RunE: keysRun(o, func(ctx context.Context, c *keyapi.AdminClient, out io.Writer, _ []string) error {
			keys, err := c.ListKeys(ctx, account, category, status)
			if err != nil {
				return err
			}
			if o.json {
				return keysJSON(out, keys)
			}
			return keysTable(out, keys)
		}),
	}
	fs := cmd.Flags()
	fs.StringVar(&account, "account", "", "only this account's keys")
	fs.StringVar(&category, "category", "", "only this category")
	fs.StringVar(&status, "status", "", "only active, inactive, revoked or expired keys")
	annotateEnv(fs)
	return cmd
}

func keysShowCmd(o *keysOpts) *cobra.Command {
	return &cobra.Command{
		Use:   "show <prefix>",
		Short: "Show one key, with its live budget and quota use",
		Args:  cobra.ExactArgs(1),
		RunE: keysRun(o, func(ctx context.Context, c *keyapi.AdminClient, out io.Writer, args []string) error {
			v, err := c.GetKey(ctx, args[0])
			if err != nil {
				return err
			}
			if o.json {
				return keysJSON(out, v)
			}
			return keysDetail(out, v)
		}),
	}
}

func keysPatchCmd(o *keysOpts, name, short string, patch keyapi.KeyPatch) *cobra.Command {
	return &cobra.Command{
		Use:   name + " <prefix>",
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: keysRun(o, func(ctx context.Context, c *keyapi.AdminClient, out io.Writer, args []string) error {
			v, err := c.PatchKey(ctx, args[0], patch)
			if err != nil {
				return err
			}
			if o.json {
				return keysJSON(out, v)
			}
			return keysTable(out, []keyapi.KeyView{v})
		}),
	}
}

// keysUpdateCmd changes what its flags name, and nothing else (a PATCH).
func keysUpdateCmd(o *keysOpts) *cobra.Command {
	var (
		lim             auth.Limits
		quo             auth.Quotas
		alias, category string
		scopes, cidrs   []string
		expiresAt       string
		expiresIn       time.Duration
		noExpiry        bool
	)
	cmd := &cobra.Command{
		Use:   "update <prefix>",
		Short: "Change a key's limits, quotas, expiry, alias or category (only the flags given; 0 restores a tier default)",
		Args:  cobra.ExactArgs(1),
	}
	fs := cmd.Flags()
	cmd.RunE = keysRun(o, func(ctx context.Context, c *keyapi.AdminClient, out io.Writer, args []string) error {
		var p keyapi.KeyPatch
		var lp keyapi.LimitsPatch
		var qp keyapi.QuotasPatch
		changed := fs.Changed
		if changed("credits-per-minute") {
			lp.CreditsPerMinute = &lim.CreditsPerMinute
		}
		if changed("max-connections") {
			lp.MaxConnections = &lim.MaxConnections
		}
		if changed("max-subscriptions") {
			lp.MaxSubscriptions = &lim.MaxSubscriptions
		}
		if changed("conn-messages-per-second") {
			lp.ConnMessagesPerSecond = &lim.ConnMessagesPerSecond
		}
		if changed("quota-total") {
			qp.Total = &quo.Total
		}
		if changed("quota-daily") {
			qp.Daily = &quo.Daily
		}
		if changed("quota-weekly") {
			qp.Weekly = &quo.Weekly
		}
		if changed("quota-monthly") {
			qp.Monthly = &quo.Monthly
		}
		if changed("quota-delivered-daily") {
			qp.DeliveredDaily = &quo.DeliveredDaily
		}
		if changed("calendar") {
			qp.Calendar = &quo.Calendar
		}
		if lp != (keyapi.LimitsPatch{}) {
			p.Limits = &lp
		}
		if qp != (keyapi.QuotasPatch{}) {
			p.Quotas = &qp
		}
		if changed("alias") {
			p.Alias = &alias
		}
		if changed("category") {
			p.Category = &category
		}
		if changed("scopes") {
			p.Scopes = &scopes
		}
		if changed("allowed-cidrs") {
			p.AllowedCIDRs = &cidrs
		}
		switch n := btoi(expiresAt != "") + btoi(expiresIn != 0) + btoi(noExpiry); {
		case n > 1:
			return fmt.Errorf("--expires-at, --expires-in and --no-expiry exclude each other")
		case expiresAt != "":
			t, err := time.Parse(time.RFC3339, expiresAt)
			if err != nil {
				return fmt.Errorf("--expires-at %q: want an RFC 3339 time like 2026-01-31T00:00:00Z", expiresAt)
			}
			p.ExpiresAt = keyapi.OptionalTime{Set: true, Time: t}
		case expiresIn != 0:
			p.ExpiresAt = keyapi.OptionalTime{Set: true, Time: time.Now().Add(expiresIn).UTC().Truncate(time.Second)}
		case noExpiry:
			p.ExpiresAt = keyapi.OptionalTime{Set: true}
		}
		if p == (keyapi.KeyPatch{}) {
			return fmt.Errorf("nothing to update: give at least one of the flags (see --help)")
		}
		v, err := c.PatchKey(ctx, args[0], p)
		if err != nil {
			return err
		}
		if o.json {
			return keysJSON(out, v)
		}
		return keysDetail(out, v)
	})
	keysLimitFlags(fs, &lim, &quo)
	fs.StringVar(&alias, "alias", "", "new alias (unique per account; empty removes it)")
	fs.StringVar(&category, "category", "", "new category")
	fs.StringSliceVar(&scopes, "scopes", nil, `new scopes: market and/or account ("" restores both); live subscriptions no longer allowed end`)
	fs.StringSliceVar(&cidrs, "allowed-cidrs", nil, `new IP allowlist, e.g. 10.0.0.0/8 ("" allows any IP)`)
	fs.StringVar(&expiresAt, "expires-at", "", "new expiry time (RFC 3339)")
	fs.DurationVar(&expiresIn, "expires-in", 0, "new expiry as a duration from now, e.g. 720h")
	fs.BoolVar(&noExpiry, "no-expiry", false, "remove the expiry")
	annotateEnv(fs)
	return cmd
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func keysRotateCmd(o *keysOpts) *cobra.Command {
	var alias string
	cmd := &cobra.Command{
		Use:   "rotate <prefix>",
		Short: "Create a new key with the same settings; the old one stays active until deactivated",
		Args:  cobra.ExactArgs(1),
		RunE: keysRun(o, func(ctx context.Context, c *keyapi.AdminClient, out io.Writer, args []string) error {
			ck, err := c.RotateKey(ctx, args[0], alias)
			if err != nil {
				return err
			}
			return keysPrintCreated(out, o, ck)
		}),
	}
	cmd.Flags().StringVar(&alias, "alias", "", "alias of the new key (default: the old key's alias moves to it)")
	annotateEnv(cmd.Flags())
	return cmd
}

func keysDeleteCmd(o *keysOpts) *cobra.Command {
	return &cobra.Command{
		Use:   "delete <prefix>",
		Short: "Delete a key that was never used (deactivate used keys instead)",
		Args:  cobra.ExactArgs(1),
		RunE: keysRun(o, func(ctx context.Context, c *keyapi.AdminClient, out io.Writer, args []string) error {
			if err := c.DeleteKey(ctx, args[0]); err != nil {
				return err
			}
			if o.json {
				return keysJSON(out, map[string]string{"deleted": args[0]})
			}
			_, err := fmt.Fprintf(out, "deleted %s\n", args[0])
			return err
		}),
	}
}

func keysEventsCmd(o *keysOpts) *cobra.Command {
	var limit int
	cmd := &cobra.Command{
		Use:   "events <prefix>",
		Short: "Show the latest connection events of a key, newest last",
		Args:  cobra.ExactArgs(1),
		RunE: keysRun(o, func(ctx context.Context, c *keyapi.AdminClient, out io.Writer, args []string) error {
			evs, err := c.KeyEvents(ctx, args[0], limit)
			if err != nil {
				return err
			}
			if o.json {
				return keysJSON(out, evs)
			}
			tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "TIME\tIP\tNODE\tDURATION\tIN\tOUT\tCLOSE\tREASON/REFUSAL")
			for _, e := range evs {
				reason := e.CloseReason
				if e.Refusal != "" {
					reason = "refused: " + e.Refusal
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%d\t%s\n", e.Time.UTC().Format(time.RFC3339), e.IP, keysDash(e.Node),
					time.Duration(e.DurationMS)*time.Millisecond, e.MsgsIn, e.MsgsOut, e.CloseCode, keysDash(reason))
			}
			return tw.Flush()
		}),
	}
	cmd.Flags().IntVar(&limit, "limit", 100, "number of events, 1..1000")
	annotateEnv(cmd.Flags())
	return cmd
}

func keysPrintCreated(out io.Writer, o *keysOpts, ck keyapi.CreatedKey) error {
	if o.json {
		return keysJSON(out, ck)
	}
	fmt.Fprintf(out, "api key: %s\n(shown once: store it now)\n\n", ck.APIKey)
	return keysTable(out, []keyapi.KeyView{ck.Key})
}

func keysJSON(out io.Writer, v any) error {
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func keysDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func keysTime(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func keysTable(out io.Writer, keys []keyapi.KeyView) error {
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PREFIX\tACCOUNT\tALIAS\tCATEGORY\tSTATUS\tCREATED\tEXPIRES\tLAST USED\tREQUESTS")
	for _, k := range keys {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\n", k.Prefix, k.Account, keysDash(k.Alias), keysDash(k.Category), k.Status,
			k.CreatedAt.UTC().Format(time.RFC3339), keysTime(k.ExpiresAt), keysTime(k.LastUsedAt), k.RequestCount)
	}
	return tw.Flush()
}

func keysDetail(out io.Writer, k keyapi.KeyView) error {
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	row := func(name string, v any) { fmt.Fprintf(tw, "%s\t%v\n", name, v) }
	row("prefix", k.Prefix)
	row("account", k.Account)
	row("alias", keysDash(k.Alias))
	row("category", keysDash(k.Category))
	row("status", k.Status)
	row("scopes", strings.Join(k.Scopes, ","))
	row("allowed cidrs", keysDash(strings.Join(k.AllowedCIDRs, ",")))
	row("created", k.CreatedAt.UTC().Format(time.RFC3339))
	row("expires", keysTime(k.ExpiresAt))
	row("last used", keysTime(k.LastUsedAt))
	row("requests", k.RequestCount)
	lim := func(v any) string {
		if fmt.Sprint(v) == "0" {
			return "tier default"
		}
		return fmt.Sprint(v)
	}
	row("credits/minute", lim(k.Limits.CreditsPerMinute))
	row("max connections", lim(k.Limits.MaxConnections))
	row("max subscriptions", lim(k.Limits.MaxSubscriptions))
	row("messages/s/conn", lim(k.Limits.ConnMessagesPerSecond))
	var quotas []string
	for _, q := range []struct {
		n string
		v int64
	}{{"total", k.Quotas.Total}, {"daily", k.Quotas.Daily}, {"weekly", k.Quotas.Weekly}, {"monthly", k.Quotas.Monthly}, {"delivered_daily", k.Quotas.DeliveredDaily}} {
		if q.v != 0 {
			quotas = append(quotas, fmt.Sprintf("%s %d", q.n, q.v))
		}
	}
	if k.Quotas.Calendar {
		quotas = append(quotas, "calendar (UTC)")
	}
	row("quotas", keysDash(strings.Join(quotas, ", ")))
	u := func(c auth.UsageCounters) string {
		return fmt.Sprintf("%d messages, %d bytes delivered; %d credits", c.MessagesDelivered, c.BytesDelivered, c.Credits)
	}
	row("usage today (UTC)", u(k.UsageToday))
	row("usage total", u(k.UsageTotal))
	if k.Live != nil {
		row("live credits", fmt.Sprintf("%d of %d left, full at %s", k.Live.Credits.Remaining, k.Live.Credits.Limit, k.Live.Credits.ResetAt.UTC().Format(time.RFC3339)))
		row("live connections", k.Live.Connections)
		for _, w := range slices.Sorted(maps.Keys(k.Live.Quotas)) {
			q := k.Live.Quotas[w]
			v := fmt.Sprintf("%d of %d used", q.Used, q.Limit)
			if q.ResetAt != nil {
				v += ", frees at " + q.ResetAt.UTC().Format(time.RFC3339)
			}
			row("quota "+w, v)
		}
	} else {
		row("live usage", "not available")
	}
	return tw.Flush()
}
