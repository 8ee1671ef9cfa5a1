package admin

import (
	"context"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"tokend/appliance"
)

// Identity sources: LDAP directories tokend pulls from and identity
// providers that push over SCIM. Secrets cross this door in one direction
// only: the bind password comes in (a Secret in the request, sealed by the
// Service) and is never rendered; a SCIM token goes out exactly once, on
// creation or rotation, with Cache-Control: no-store.

func (s *Server) createIdentitySource(c *gin.Context) {
	var req identitySourceRequest
	if err := decodeJSON(c, &req); err != nil {
		s.WriteError(c, err)
		return
	}
	in, err := req.source()
	if err != nil {
		s.WriteError(c, err)
		return
	}
	src, token, err := s.svc.CreateIdentitySource(ctx(c), in)
	if err != nil {
		s.WriteError(c, err)
		return
	}
	// The token is shown once; the group already forbids caching, and this
	// response must never lose that header.
	c.Header("Cache-Control", "no-store")
	c.Header("Location", APIPrefix+"/identity-sources/"+src.ID)
	render(c, http.StatusCreated, NewIdentitySourceDTO{IdentitySourceDTO: identitySourceDTO(src), SCIMToken: token.Reveal()})
}

func (s *Server) listIdentitySources(c *gin.Context) {
	srcs, err := s.svc.ListIdentitySources(ctx(c))
	if err != nil {
		s.WriteError(c, err)
		return
	}
	render(c, http.StatusOK, List[IdentitySourceDTO]{Items: mapDTO(srcs, identitySourceDTO)})
}

func (s *Server) getIdentitySource(c *gin.Context) {
	src, err := s.svc.GetIdentitySource(ctx(c), c.Param("id"))
	if err != nil {
		s.WriteError(c, err)
		return
	}
	render(c, http.StatusOK, identitySourceDTO(src))
}

func (s *Server) updateIdentitySource(c *gin.Context) {
	var req identitySourceRequest
	if err := decodeJSON(c, &req); err != nil {
		s.WriteError(c, err)
		return
	}
	in, err := req.source()
	if err != nil {
		s.WriteError(c, err)
		return
	}
	src, err := s.svc.UpdateIdentitySource(ctx(c), c.Param("id"), in)
	if err != nil {
		s.WriteError(c, err)
		return
	}
	render(c, http.StatusOK, identitySourceDTO(src))
}

func (s *Server) deleteIdentitySource(c *gin.Context) {
	if err := s.svc.DeleteIdentitySource(ctx(c), c.Param("id")); err != nil {
		s.WriteError(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}

// syncWriteTimeout replaces the listener's write timeout (sized for JSON
// answers) while a sync runs: a full pass over a large directory takes
// longer than that.
const syncWriteTimeout = 15 * time.Minute

// syncIdentitySource runs a pull of an LDAP source now through
// Options.Sync (see there for how its errors are answered). The source is
// looked up first so that an unknown id and a SCIM source are answered the
// same whatever Sync does with them. A run once started is not cancelled
// when the client goes away: it finishes and is recorded (…/runs shows
// it), keeping the actor for the audit.
func (s *Server) syncIdentitySource(c *gin.Context) {
	if s.syncFn == nil {
		writeProblem(c, NewProblem(http.StatusNotImplemented, CodeNotSupported,
			"this appliance does not run directory syncs on request"))
		return
	}
	force, err := queryBool(c, "force")
	if err != nil {
		s.WriteError(c, err)
		return
	}
	src, err := s.svc.GetIdentitySource(ctx(c), c.Param("id"))
	if err != nil {
		s.WriteError(c, err)
		return
	}
	if src.Type != appliance.SourceTypeLDAP {
		s.WriteError(c, reqErr(http.StatusConflict, CodeInvalidState,
			"SCIM sources are pushed, not pulled: the identity provider sends its changes to "+SCIMBasePath))
		return
	}
	// Not every ResponseWriter supports deadlines (httptest's does not).
	_ = http.NewResponseController(c.Writer).SetWriteDeadline(time.Now().Add(syncWriteTimeout))
	run, err := s.syncFn(context.WithoutCancel(ctx(c)), src.ID, force != nil && *force)
	if err != nil {
		s.WriteError(c, &syncError{err})
		return
	}
	render(c, http.StatusOK, syncRunDTO(run))
}

func (s *Server) listSyncRuns(c *gin.Context) {
	limit, err := queryInt(c, "limit")
	if err != nil {
		s.WriteError(c, err)
		return
	}
	runs, err := s.svc.ListSyncRuns(ctx(c), c.Param("id"), limit)
	if err != nil {
		s.WriteError(c, err)
		return
	}
	render(c, http.StatusOK, List[SyncRunDTO]{Items: mapDTO(runs, syncRunDTO)})
}

func (s *Server) rotateSCIMToken(c *gin.Context) {
	token, err := s.svc.RotateSCIMToken(ctx(c), c.Param("id"))
	if err != nil {
		s.WriteError(c, err)
		return
	}
	c.Header("Cache-Control", "no-store")
	render(c, http.StatusCreated, SCIMTokenDTO{SCIMToken: token.Reveal(), SCIMURL: SCIMBasePath})
}
