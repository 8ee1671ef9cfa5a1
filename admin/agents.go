package admin

import (
	"fmt"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"tokend/appliance"
)

// Agents: RADIUS clients and clients of the RSA SecurID Authentication API.
// Their secrets cross this door like the identity sources' do: a RADIUS
// shared secret comes in (sealed by the Service) and is never rendered; a
// generated secret or REST access key goes out exactly once, on creation,
// with Cache-Control: no-store.

// agentRequest creates (POST) or replaces (PUT) an agent.
type agentRequest struct {
	Name                        string           `json:"name"`
	Kind                        string           `json:"kind"`
	Address                     string           `json:"address"`
	Secret                      appliance.Secret `json:"secret"`
	RequireMessageAuthenticator *bool            `json:"require_message_authenticator"`
	Enabled                     *bool            `json:"enabled"`
	Sources                     []string         `json:"sources"`
}

// validate checks only the shape; the Service checks the rules (and names
// limits, never the secret).
func (r agentRequest) validate() error {
	var fp []FieldProblem
	if len(r.Name) > 128 {
		fp = append(fp, FieldProblem{"name", "must be at most 128 characters"})
	}
	if len(r.Secret) > 128 {
		fp = append(fp, FieldProblem{"secret", "must be at most 128 characters"})
	}
	if len(r.Sources) > 100 {
		fp = append(fp, FieldProblem{"sources", "at most 100 identity sources"})
	}
	return invalidFields(fp...)
}

func (r agentRequest) input() appliance.AgentInput {
	return appliance.AgentInput{Name: r.Name, Kind: r.Kind, Address: r.Address, Secret: r.Secret,
		RequireMessageAuthenticator: r.RequireMessageAuthenticator, Enabled: r.Enabled, Sources: r.Sources}
}

// AgentDTO is an agent without its secret. Address and
// require_message_authenticator are present for RADIUS agents only.
type AgentDTO struct {
	ID                          string     `json:"id"`
	Name                        string     `json:"name"`
	Kind                        string     `json:"kind"`
	Address                     *string    `json:"address,omitempty"`
	RequireMessageAuthenticator *bool      `json:"require_message_authenticator,omitempty"`
	Enabled                     bool       `json:"enabled"`
	Sources                     []string   `json:"sources"`
	CreatedAt                   time.Time  `json:"created_at"`
	UpdatedAt                   time.Time  `json:"updated_at"`
	LastUsedAt                  *time.Time `json:"last_used_at"`
}

// NewAgentDTO is a created agent with the secret shown once: the generated
// RADIUS shared secret (only when the request gave none) or the REST access
// key.
type NewAgentDTO struct {
	AgentDTO
	Secret    string `json:"secret,omitempty"`
	AccessKey string `json:"access_key,omitempty"`
}

func agentDTO(a appliance.Agent) AgentDTO {
	d := AgentDTO{ID: a.ID, Name: a.Name, Kind: a.Kind, Enabled: a.Enabled, Sources: a.Sources,
		CreatedAt: a.CreatedAt.UTC(), UpdatedAt: a.UpdatedAt.UTC(), LastUsedAt: optTime(a.LastUsedAt)}
	if d.Sources == nil {
		d.Sources = []string{}
	}
	if a.Kind == appliance.AgentRADIUS {
		d.Address = optString(a.Address)
		d.RequireMessageAuthenticator = &a.RequireMessageAuthenticator
	}
	return d
}

func (s *Server) createAgent(c *gin.Context) {
	var req agentRequest
	if err := decodeJSON(c, &req); err != nil {
		s.WriteError(c, err)
		return
	}
	a, secret, err := s.svc.CreateAgent(ctx(c), req.input())
	if err != nil {
		s.WriteError(c, err)
		return
	}
	out := NewAgentDTO{AgentDTO: agentDTO(a)}
	switch a.Kind {
	case appliance.AgentRADIUS:
		out.Secret = secret.Reveal()
	case appliance.AgentREST:
		out.AccessKey = secret.Reveal()
	}
	c.Header("Cache-Control", "no-store")
	c.Header("Location", fmt.Sprintf("%s/agents/%s", APIPrefix, a.ID))
	render(c, http.StatusCreated, out)
}

func (s *Server) listAgents(c *gin.Context) {
	agents, err := s.svc.ListAgents(ctx(c))
	if err != nil {
		s.WriteError(c, err)
		return
	}
	render(c, http.StatusOK, List[AgentDTO]{Items: mapDTO(agents, agentDTO)})
}

func (s *Server) getAgent(c *gin.Context) {
	a, err := s.svc.GetAgent(ctx(c), c.Param("id"))
	if err != nil {
		s.WriteError(c, err)
		return
	}
	render(c, http.StatusOK, agentDTO(a))
}

func (s *Server) updateAgent(c *gin.Context) {
	var req agentRequest
	if err := decodeJSON(c, &req); err != nil {
		s.WriteError(c, err)
		return
	}
	a, err := s.svc.UpdateAgent(ctx(c), c.Param("id"), req.input())
	if err != nil {
		s.WriteError(c, err)
		return
	}
	render(c, http.StatusOK, agentDTO(a))
}

func (s *Server) deleteAgent(c *gin.Context) {
	if err := s.svc.DeleteAgent(ctx(c), c.Param("id")); err != nil {
		s.WriteError(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}
