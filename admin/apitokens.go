package admin

import (
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"tokend/appliance"
)

// --- API tokens: create (optionally expiring), list, revoke, rotate.

type createAPITokenRequest struct {
	Name string `json:"name"`
	Role string `json:"role"`
	// ExpiresAt is an RFC 3339 time; empty means the token does not expire.
	ExpiresAt string `json:"expires_at,omitempty"`

	expires time.Time
}

func (r *createAPITokenRequest) validate() error {
	if r.ExpiresAt == "" {
		return nil
	}
	t, err := time.Parse(time.RFC3339, r.ExpiresAt)
	if err != nil {
		return invalid("expires_at", "must be an RFC 3339 time such as 2027-01-31T00:00:00Z")
	}
	r.expires = t
	return nil
}

// APITokenDTO is an API token's metadata; never its hash.
type APITokenDTO struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Role      string    `json:"role"`
	CreatedAt time.Time `json:"created_at"`
	CreatedBy string    `json:"created_by"`
	// ExpiresAt is absent for a token that does not expire.
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	// LastUsedAt is absent for a token never used; it is kept to the
	// minute.
	LastUsedAt *time.Time `json:"last_used_at,omitempty"`
}

// NewAPITokenDTO is the one response that shows a new token.
type NewAPITokenDTO struct {
	APITokenDTO
	Token string `json:"token"`
}

func apiTokenDTO(t appliance.APIToken) APITokenDTO {
	return APITokenDTO{ID: t.ID, Name: t.Name, Role: t.Role, CreatedAt: t.CreatedAt.UTC(), CreatedBy: t.CreatedBy,
		ExpiresAt: optionalTime(t.ExpiresAt), LastUsedAt: optionalTime(t.LastUsedAt)}
}

func optionalTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}

func (s *Server) createAPIToken(c *gin.Context) {
	var req createAPITokenRequest
	if err := decodeJSON(c, &req); err != nil {
		s.WriteError(c, err)
		return
	}
	t, secret, err := s.svc.IssueAPIToken(ctx(c), appliance.NewAPIToken{Name: req.Name, Role: req.Role, ExpiresAt: req.expires})
	if err != nil {
		s.WriteError(c, err)
		return
	}
	render(c, http.StatusCreated, NewAPITokenDTO{APITokenDTO: apiTokenDTO(t), Token: secret.Reveal()})
}

func (s *Server) listAPITokens(c *gin.Context) {
	toks, err := s.svc.ListAPITokens(ctx(c))
	if err != nil {
		s.WriteError(c, err)
		return
	}
	render(c, http.StatusOK, List[APITokenDTO]{Items: mapDTO(toks, apiTokenDTO)})
}

func (s *Server) revokeAPIToken(c *gin.Context) {
	if err := s.svc.RevokeAPIToken(ctx(c), c.Param("id")); err != nil {
		s.WriteError(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}

// rotateAPIToken gives a token a new secret (shown once); the old one is
// refused from then on. `tokend admin rotate-bootstrap-token` uses it on a
// running tokend.
func (s *Server) rotateAPIToken(c *gin.Context) {
	t, secret, err := s.svc.RotateAPIToken(ctx(c), c.Param("id"))
	if err != nil {
		s.WriteError(c, err)
		return
	}
	render(c, http.StatusOK, NewAPITokenDTO{APITokenDTO: apiTokenDTO(t), Token: secret.Reveal()})
}
