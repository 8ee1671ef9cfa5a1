package admin

import (
	"context"
	"encoding/hex"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"tokend/appliance"
)

// Handlers: bind → validate → one Service call → render.

func (s *Server) createUser(c *gin.Context) {
	var req createUserRequest
	if err := decodeJSON(c, &req); err != nil {
		s.WriteError(c, err)
		return
	}
	u, err := s.svc.CreateUser(ctx(c), appliance.NewUser{UserName: req.UserName, DisplayName: req.DisplayName, Email: req.Email})
	if err != nil {
		s.WriteError(c, err)
		return
	}
	c.Header("Location", APIPrefix+"/users/"+u.ID)
	render(c, http.StatusCreated, userViewDTO(u, s.now()))
}

func (s *Server) listUsers(c *gin.Context) {
	limit, err := queryInt(c, "limit")
	if err != nil {
		s.WriteError(c, err)
		return
	}
	page, err := s.svc.ListUsers(ctx(c), appliance.UserQuery{Search: c.Query("search"), Source: c.Query("source"),
		Limit: limit, Cursor: c.Query("cursor")})
	if err != nil {
		s.WriteError(c, err)
		return
	}
	now := s.now()
	out := Page[UserDTO]{Items: mapDTO(page.Items, func(u appliance.User) UserDTO { return userDTO(u, now) }),
		NextCursor: page.NextCursor, Total: page.Total}
	render(c, http.StatusOK, out)
}

func (s *Server) getUser(c *gin.Context) {
	u, err := s.svc.GetUser(ctx(c), c.Param("id"))
	if err != nil {
		s.WriteError(c, err)
		return
	}
	render(c, http.StatusOK, userViewDTO(u, s.now()))
}

func (s *Server) assignTokens(c *gin.Context) {
	var req assignRequest
	if err := decodeJSON(c, &req); err != nil {
		s.WriteError(c, err)
		return
	}
	u, err := s.svc.AssignTokens(ctx(c), c.Param("id"), req.Serials)
	if err != nil {
		s.WriteError(c, err)
		return
	}
	render(c, http.StatusOK, userViewDTO(u, s.now()))
}

func (s *Server) unassignToken(c *gin.Context) {
	serial, err := serialParam(c)
	if err != nil {
		s.WriteError(c, err)
		return
	}
	if err := s.svc.UnassignToken(ctx(c), c.Param("id"), serial); err != nil {
		s.WriteError(c, err)
		return
	}
	s.qr.drop(serial) // the code was voided with the assignment
	c.Status(http.StatusNoContent)
}

// importMediaType reports whether an import body may have media type mt. A
// multipart upload (curl -F) or a form-encoded one (curl --data) would reach
// the decoder wrapped or mangled, so they are refused up front.
func importMediaType(mt string) bool {
	switch mt {
	case "", "application/octet-stream", "text/csv", "text/plain", "application/xml", "text/xml", "application/pskc+xml":
		return true
	}
	return false
}

func (s *Server) importTokens(c *gin.Context) {
	req, err := importRequest(c, s.maxImp)
	if err != nil {
		s.WriteError(c, err)
		return
	}
	req.Body = newPacedBody(c.Writer, req.Body, s.impRate, s.impGrace, time.Now)
	// The body is spooled before any row is imported; from then on the
	// import finishes and is recorded even if the client goes away.
	job, err := s.svc.ImportTokens(context.WithoutCancel(ctx(c)), req)
	if err != nil {
		s.WriteError(c, err)
		return
	}
	status := http.StatusCreated
	if job.DryRun {
		status = http.StatusOK
	} else {
		c.Header("Location", APIPrefix+"/import-jobs/"+job.ID)
	}
	render(c, status, importJobDTO(job, true))
}

// importRequest binds the query, the PSKC secret headers and the raw body.
func importRequest(c *gin.Context, limit int64) (appliance.ImportRequest, error) {
	// Refuse a declared oversize body before the Service spools any of it
	// (a body over the limit is refused there too, after limit bytes).
	if c.Request.ContentLength > limit {
		return appliance.ImportRequest{}, &http.MaxBytesError{Limit: limit}
	}
	mt := c.ContentType()
	if !importMediaType(mt) {
		return appliance.ImportRequest{}, reqErr(http.StatusUnsupportedMediaType, CodeUnsupportedMediaType,
			"send the token file as the raw body with Content-Type text/csv, application/pskc+xml, application/xml or application/octet-stream")
	}
	dry, err := queryBool(c, "dry_run")
	if err != nil {
		return appliance.ImportRequest{}, err
	}
	req := appliance.ImportRequest{Format: c.Query("format"), OnDuplicate: c.Query("on_duplicate"), Kind: c.Query("kind"),
		DryRun: dry != nil && *dry, PSKCPassword: appliance.Secret(c.GetHeader("X-PSKC-Password")),
		FilePassword: appliance.Secret(c.GetHeader("X-Token-File-Password")), Body: http.MaxBytesReader(c.Writer, c.Request.Body, limit), MaxSize: limit}
	if k := c.GetHeader("X-PSKC-Key"); k != "" {
		key, err := hex.DecodeString(k)
		if err != nil || len(key) != 16 {
			return appliance.ImportRequest{}, invalid("X-PSKC-Key", "must be 32 hex digits (a 16-byte AES key)")
		}
		req.PSKCKey = key
	}
	if req.PSKCKey != nil && req.PSKCPassword != "" {
		return appliance.ImportRequest{}, invalid("X-PSKC-Key", "give either X-PSKC-Key or X-PSKC-Password, not both")
	}
	return req, nil
}

func (s *Server) listImportJobs(c *gin.Context) {
	limit, err := queryInt(c, "limit")
	if err != nil {
		s.WriteError(c, err)
		return
	}
	jobs, err := s.svc.ListImportJobs(ctx(c), limit)
	if err != nil {
		s.WriteError(c, err)
		return
	}
	render(c, http.StatusOK, List[ImportJobDTO]{Items: mapDTO(jobs, func(j appliance.ImportJob) ImportJobDTO { return importJobDTO(j, false) })})
}

func (s *Server) getImportJob(c *gin.Context) {
	job, err := s.svc.GetImportJob(ctx(c), c.Param("id"))
	if err != nil {
		s.WriteError(c, err)
		return
	}
	render(c, http.StatusOK, importJobDTO(job, true))
}

func (s *Server) listTokens(c *gin.Context) {
	limit, err := queryInt(c, "limit")
	if err != nil {
		s.WriteError(c, err)
		return
	}
	assigned, err := queryBool(c, "assigned")
	if err != nil {
		s.WriteError(c, err)
		return
	}
	page, err := s.svc.ListTokens(ctx(c), appliance.TokenQuery{Search: c.Query("search"), Assigned: assigned,
		Kind: c.Query("kind"), Limit: limit, Cursor: c.Query("cursor")})
	if err != nil {
		s.WriteError(c, err)
		return
	}
	render(c, http.StatusOK, Page[TokenDTO]{Items: mapDTO(page.Items, tokenDTO), NextCursor: page.NextCursor, Total: page.Total})
}

func (s *Server) getToken(c *gin.Context) {
	serial, err := serialParam(c)
	if err != nil {
		s.WriteError(c, err)
		return
	}
	t, err := s.svc.GetToken(ctx(c), serial)
	if err != nil {
		s.WriteError(c, err)
		return
	}
	render(c, http.StatusOK, tokenDTO(t))
}

func (s *Server) setEnabled(enabled bool) gin.HandlerFunc {
	return func(c *gin.Context) {
		serial, err := serialParam(c)
		if err != nil {
			s.WriteError(c, err)
			return
		}
		t, err := s.svc.SetTokenEnabled(ctx(c), serial, enabled)
		if err != nil {
			s.WriteError(c, err)
			return
		}
		render(c, http.StatusOK, tokenDTO(t))
	}
}

func (s *Server) distribute(c *gin.Context) {
	serial, err := serialParam(c)
	if err != nil {
		s.WriteError(c, err)
		return
	}
	var req distributeRequest
	if err := decodeJSON(c, &req); err != nil {
		s.WriteError(c, err)
		return
	}
	if s.deliverSeed(c, serial, req) {
		return
	}
	d, err := s.svc.Distribute(ctx(c), serial, req.Profile)
	if err != nil {
		s.WriteError(c, err)
		return
	}
	// The store keeps only a keyed hash of the code: remember the device
	// link for a while so the QR code can be drawn.
	s.qr.put(serial, d.DeviceURL.Reveal(), d.ExpiresAt, s.now())
	render(c, http.StatusCreated, DistributionDTO{Serial: d.Serial, Profile: d.Profile, CTKIPURL: d.CTKIPURL,
		ActivationCode: d.ActivationCode.Reveal(), ExpiresAt: d.ExpiresAt.UTC(), DeviceURL: d.DeviceURL.Reveal(),
		QRCodeURL: APIPrefix + "/tokens/" + serial + "/distribution/qr.png"})
}

func (s *Server) voidDistribution(c *gin.Context) {
	serial, err := serialParam(c)
	if err != nil {
		s.WriteError(c, err)
		return
	}
	// Forget the link first: even if voiding fails, the QR code must not
	// outlive the admin's intent.
	s.qr.drop(serial)
	if err := s.svc.VoidDistribution(ctx(c), serial); err != nil {
		s.WriteError(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}

func (s *Server) qrCode(c *gin.Context) {
	serial, err := serialParam(c)
	if err != nil {
		s.WriteError(c, err)
		return
	}
	// The QR code carries the activation code: whoever reads it can
	// provision the token. Checked first, so a refusal tells nothing of
	// whether a code is outstanding.
	if err := s.svc.GuardAdminFactor(ctx(c), serial, "token.distribution.qr"); err != nil {
		s.WriteError(c, err)
		return
	}
	if link, ok := s.qr.takeOnce(serial, s.now()); ok {
		s.drawOnce(c, serial, link)
		return
	}
	link, ok := s.qr.get(serial, s.now())
	if ok {
		// The code may have been consumed, voided by an unassignment or
		// re-issued elsewhere: draw only while one is still outstanding.
		t, err := s.svc.GetToken(ctx(c), serial)
		if err != nil {
			s.WriteError(c, err)
			return
		}
		if len(t.CodeHash) == 0 || t.UserID == "" {
			s.qr.drop(serial)
			ok = false
		}
	}
	if !ok {
		writeProblem(c, NewProblem(http.StatusNotFound, CodeQRUnavailable,
			"the QR code of this token's activation code is no longer available; re-issue the code"))
		return
	}
	png, err := qrPNG(link)
	if err != nil {
		s.WriteError(c, err)
		return
	}
	c.Data(http.StatusOK, "image/png", png)
}

func (s *Server) createProfile(c *gin.Context) {
	var req profileRequest
	if err := decodeJSON(c, &req); err != nil {
		s.WriteError(c, err)
		return
	}
	p, err := req.profile()
	if err != nil {
		s.WriteError(c, err)
		return
	}
	out, err := s.svc.CreateProfile(ctx(c), p)
	if err != nil {
		s.WriteError(c, err)
		return
	}
	c.Header("Location", APIPrefix+"/profiles/"+out.Name)
	render(c, http.StatusCreated, profileDTO(out))
}

func (s *Server) listProfiles(c *gin.Context) {
	ps, err := s.svc.ListProfiles(ctx(c))
	if err != nil {
		s.WriteError(c, err)
		return
	}
	render(c, http.StatusOK, List[ProfileDTO]{Items: mapDTO(ps, profileDTO)})
}

func (s *Server) getProfile(c *gin.Context) {
	p, err := s.svc.GetProfile(ctx(c), c.Param("name"))
	if err != nil {
		s.WriteError(c, err)
		return
	}
	render(c, http.StatusOK, profileDTO(p))
}

func (s *Server) updateProfile(c *gin.Context) {
	var req profileRequest
	if err := decodeJSON(c, &req); err != nil {
		s.WriteError(c, err)
		return
	}
	p, err := req.profile()
	if err != nil {
		s.WriteError(c, err)
		return
	}
	out, err := s.svc.UpdateProfile(ctx(c), c.Param("name"), p)
	if err != nil {
		s.WriteError(c, err)
		return
	}
	render(c, http.StatusOK, profileDTO(out))
}

func (s *Server) deleteProfile(c *gin.Context) {
	if err := s.svc.DeleteProfile(ctx(c), c.Param("name")); err != nil {
		s.WriteError(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}

func (s *Server) listAudit(c *gin.Context) {
	limit, err := queryInt(c, "limit")
	if err != nil {
		s.WriteError(c, err)
		return
	}
	page, err := s.svc.ListAudit(ctx(c), appliance.AuditQuery{After: c.Query("after"), Limit: limit, Actor: c.Query("actor"),
		UserID: c.Query("user_id"), Serial: c.Query("serial"), Action: c.Query("action")})
	if err != nil {
		s.WriteError(c, err)
		return
	}
	render(c, http.StatusOK, AuditPageDTO{Items: mapDTO(page.Items, auditDTO), NextCursor: page.NextCursor})
}

// --- authentication API

// authenticate decides an agent's authentication attempt. The passcode is
// never logged or echoed: the request holds it as a Secret, problems name
// only fields and limits, and the Service audits the decision without it.
func (s *Server) authenticate(c *gin.Context) {
	var req authenticateRequest
	if err := decodeJSON(c, &req); err != nil {
		s.WriteError(c, err)
		return
	}
	res, err := s.svc.Authenticate(ctx(c), appliance.AuthRequest{UserName: req.UserName, Passcode: req.Passcode.Reveal(), Session: req.Session})
	if err != nil {
		s.WriteError(c, err)
		return
	}
	render(c, http.StatusOK, authResultDTO(res))
}

// --- token and user administration

func (s *Server) changePIN(c *gin.Context) {
	serial, err := serialParam(c)
	if err != nil {
		s.WriteError(c, err)
		return
	}
	var req pinRequest
	if err := decodeJSON(c, &req); err != nil {
		s.WriteError(c, err)
		return
	}
	t, err := s.svc.ChangePIN(ctx(c), serial, appliance.PINChange{PIN: req.PIN, Clear: req.Clear, RequireNew: req.RequireNew})
	if err != nil {
		s.WriteError(c, err)
		return
	}
	render(c, http.StatusOK, tokenDTO(t))
}

func (s *Server) resync(c *gin.Context) {
	serial, err := serialParam(c)
	if err != nil {
		s.WriteError(c, err)
		return
	}
	var req resyncRequest
	if err := decodeJSON(c, &req); err != nil {
		s.WriteError(c, err)
		return
	}
	t, err := s.svc.Resync(ctx(c), serial, req.First, req.Second)
	if err != nil {
		s.WriteError(c, err)
		return
	}
	render(c, http.StatusOK, tokenDTO(t))
}

func (s *Server) unlockUser(c *gin.Context) {
	u, err := s.svc.UnlockUser(ctx(c), c.Param("id"))
	if err != nil {
		s.WriteError(c, err)
		return
	}
	render(c, http.StatusOK, userDTO(u, s.now()))
}

func (s *Server) issueEmergencyAccess(c *gin.Context) {
	var req emergencyAccessRequest
	if err := decodeJSON(c, &req); err != nil {
		s.WriteError(c, err)
		return
	}
	lifetime, err := req.lifetime()
	if err != nil {
		s.WriteError(c, err)
		return
	}
	ea, err := s.svc.IssueEmergencyAccess(ctx(c), c.Param("id"), req.Kind, req.Count, lifetime)
	if err != nil {
		s.WriteError(c, err)
		return
	}
	// The codes are shown once; the group already forbids caching, and
	// this response must never lose that header.
	c.Header("Cache-Control", "no-store")
	render(c, http.StatusCreated, emergencyAccessDTO(ea))
}

func (s *Server) revokeEmergencyAccess(c *gin.Context) {
	if err := s.svc.RevokeEmergencyAccess(ctx(c), c.Param("id")); err != nil {
		s.WriteError(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}
