// Command keepgate is the command line of keepproxy's admin API: it
// manages access keys over HTTP (never opening the database), so it works
// with any state engine and from any host that reaches the admin listener.
//
//	keepgate keys create --storage tenant-a [--id ID] [--scopes read,write] [--expires 2027-01-31T00:00:00Z]
//	                     [--description TEXT] [--rate-cap 400Mbit] [--rate-in-cap 100Mbit] [--max-concurrent 8] [--no-audit]
//	keepgate keys list [--storage NAME] [--include-revoked]
//	keepgate keys show ID
//	keepgate keys update ID [--scopes ...] [--expires ...|--no-expiry] [--description ...] [--disable|--enable] [limits]
//	keepgate keys revoke ID
//	keepgate keys rotate ID [--overlap 24h]
//	keepgate usage [--storage NAME] [--key ID] [--from DATE] [--to DATE] [--granularity hour|day] [--csv]
//
// The admin API's address and token come from --admin-url (default
// $KEEPGATE_ADMIN_URL or http://127.0.0.1:25110) and --admin-token-file
// ($KEEPGATE_ADMIN_TOKEN_FILE) or $KEEPGATE_ADMIN_TOKEN. --json prints the
// API's answer as it is. Exit codes: 0 done, 1 refused or failed, 2 bad
// usage.
package main

import (
	"errors"
	"fmt"
	"os"
)

func main() {
	err := run(os.Args[1:], os.Stdout)
	var ue usageError
	switch {
	case err == nil:
	case errors.As(err, &ue):
		fmt.Fprintln(os.Stderr, "keepgate: "+err.Error()+"\n"+usage)
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "keepgate: "+err.Error())
		os.Exit(1)
	}
}

const usage = `usage: keepgate [--admin-url URL] [--admin-token-file FILE] [--json] keys create|list|show|update|revoke|rotate ...
       keepgate [--admin-url URL] [--admin-token-file FILE] [--json] usage [--storage NAME] [--key ID] [--from DATE] [--to DATE] [--granularity hour|day] [--csv]
run "keepgate keys help" for the flags of each verb`

type usageError struct{ msg string }

func (u usageError) Error() string { return u.msg }

func usagef(f string, a ...any) error { return usageError{fmt.Sprintf(f, a...)} }
