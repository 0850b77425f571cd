package config

import "net/url"

// validateUpstream checks a storage that is another Keep gateway.
func validateUpstream(name string, st ProxyStorage, c *Keepproxy, bad func(string, ...any)) {
	u, err := url.Parse(st.Upstream)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") {
		bad("storages.%s.upstream %q: want the gateway's base URL, http(s)://host:port", name, st.Upstream)
	}
	if len(st.Stores) > 0 {
		bad("storages.%s: either stores (a pool) or upstream (another gateway), not both", name)
	}
	switch st.Identity {
	case "squashed":
		if st.TokenFile == "" {
			bad("storages.%s.token_file: a squashed upstream needs keepgate's own token there (a file, mode 0600)", name)
		}
		if c.BlobSigningKeyFile == "" {
			bad("storages.%s: a squashed upstream needs blob_signing_key_file: keepgate signs the locators it hands out for the caller", name)
		}
	case "individual":
		if st.TokenFile != "" {
			bad("storages.%s.token_file: an individual upstream takes each caller's own token; remove token_file", name)
		}
	default:
		bad("storages.%s.identity %q: squashed (one service token of keepgate's) or individual (each caller's token)", name, st.Identity)
	}
}

// IndividualStorages are the storages whose callers' tokens go upstream
// unchanged: access keys cannot be bound to them.
func (c *Keepproxy) IndividualStorages() map[string]bool {
	out := map[string]bool{}
	for n, st := range c.Storages {
		if st.Upstream != "" && st.Identity == "individual" {
			out[n] = true
		}
	}
	return out
}
