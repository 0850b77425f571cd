package config

import (
	"fmt"
	"os"
)

// ProxySources says where keepproxy checks tokens and where its stores
// come from, for the start-up log. It names files and hosts, never a
// token: any ARVADOS_API_HOST in the environment adds an authentication
// source, and the log line is where an operator sees that it did.
type ProxySources struct {
	// Auth lists the token sources in the order they are asked, e.g.
	// "token_file /etc/keepgate/tokens.yml",
	// "api api.example:443 (from ARVADOS_API_HOST)".
	Auth []string
	// Stores is "3 configured in stores" or "discovered from <host> every
	// 5m (discovery token from ARVADOS_API_TOKEN)".
	Stores string
}

// Sources describes c's token and store sources. Call after LoadKeepproxy.
func (c *Keepproxy) Sources() ProxySources {
	var s ProxySources
	if c.TokenFile != "" {
		s.Auth = append(s.Auth, "token_file "+c.TokenFile)
	}
	if c.API.Host != "" {
		from := "api.host"
		if c.apiHostFromEnv {
			from = "ARVADOS_API_HOST"
		}
		insecure := ""
		if c.API.Insecure {
			insecure = ", TLS not verified"
		}
		s.Auth = append(s.Auth, fmt.Sprintf("api %s (from %s%s)", c.API.Host, from, insecure))
	}
	if len(c.Stores) > 0 {
		s.Stores = fmt.Sprintf("%d configured in stores", len(c.Stores))
		return s
	}
	tok := "api.token_file " + c.API.TokenFile
	if c.API.TokenFile == "" {
		tok = "ARVADOS_API_TOKEN"
		if os.Getenv("ARVADOS_API_TOKEN") == "" {
			tok = "none: ARVADOS_API_TOKEN is not set"
		}
	}
	s.Stores = fmt.Sprintf("discovered from %s every %v (discovery token from %s)", c.API.Host, c.DiscoveryInterval, tok)
	return s
}
