package console

import (
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"

	"tokend/appliance"
)

// Agents: the RADIUS clients and RSA REST API clients that ask tokend to
// verify passcodes. The super admin adds, enables and disables them; the
// auditor reads the list. A generated secret or access key is shown once,
// in the answer to the form that created it, and never again.

type agentsData struct {
	List []appliance.Agent
	// Created and Shown are the agent just created and its one-time
	// secret (RADIUS shared secret or REST access key).
	Created *appliance.Agent
	Shown   string
	// Form keeps what was typed when the form is shown again with an error
	// (never the secret).
	Form struct{ Name, Kind, Address string }
}

func (c *Console) agentsPage(g *gin.Context, status int, d agentsData) {
	list, err := c.svc.ListAgents(g.Request.Context())
	if err != nil {
		c.fail(g, err)
		return
	}
	d.List = list
	c.render(g, status, "agents", "Agents", d)
}

func (c *Console) agents(g *gin.Context) { c.agentsPage(g, http.StatusOK, agentsData{}) }

func (c *Console) createAgent(g *gin.Context) {
	in := appliance.AgentInput{Name: strings.TrimSpace(g.PostForm("name")), Kind: g.PostForm("kind"),
		Address: strings.TrimSpace(g.PostForm("address")), Secret: appliance.Secret(g.PostForm("secret"))}
	if in.Kind == appliance.AgentRADIUS {
		req := g.PostForm("require_message_authenticator") == "on"
		in.RequireMessageAuthenticator = &req
	}
	a, shown, err := c.svc.CreateAgent(g.Request.Context(), in)
	if err != nil {
		d := agentsData{}
		d.Form.Name, d.Form.Kind, d.Form.Address = in.Name, in.Kind, in.Address
		c.formError(g, err, func(status int) { c.agentsPage(g, status, d) })
		return
	}
	c.agentsPage(g, http.StatusCreated, agentsData{Created: &a, Shown: shown.Reveal()})
}

func (c *Console) setAgentEnabled(enabled bool) gin.HandlerFunc {
	return func(g *gin.Context) {
		ctx := g.Request.Context()
		a, err := c.svc.GetAgent(ctx, g.Param("id"))
		if err != nil {
			c.fail(g, err)
			return
		}
		in := appliance.AgentInput{Name: a.Name, Kind: a.Kind, Address: a.Address, Enabled: &enabled, Sources: a.Sources}
		if _, err := c.svc.UpdateAgent(ctx, a.ID, in); err != nil {
			c.fail(g, err)
			return
		}
		verb := "disabled"
		if enabled {
			verb = "enabled"
		}
		c.sessions.setFlash(sessionOf(g), "Agent "+a.Name+" "+verb+".")
		redirect(g, "/agents")
	}
}
