package access

import "context"

// staticAuth accepts the tokens it maps.
type staticAuth map[string]*Identity

func (s staticAuth) Authenticate(_ context.Context, token string) (*Identity, error) {
	if id, ok := s[token]; ok {
		return id, nil
	}
	return nil, ErrBadToken
}
