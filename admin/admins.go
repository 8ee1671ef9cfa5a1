package admin

import (
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"tokend/appliance"
)

// Console admin accounts, for superadmins: list, create, reset a password,
// disable and enable, set the second factor, delete, unlock. A generated
// password is answered once (field "password") and is one-time: the admin
// must change it at the first console sign-in. API tokens are not admin
// accounts and are unaffected.

// AdminDTO is a console admin account as the API shows it: never the
// password hash.
type AdminDTO struct {
	ID                 string     `json:"id"`
	Name               string     `json:"name"`
	Role               string     `json:"role"`
	Failures           int        `json:"failures"`
	Locked             bool       `json:"locked"`
	LockedUntil        *time.Time `json:"locked_until,omitempty"`
	SecondFactorSerial string     `json:"second_factor_serial,omitempty"`
	Disabled           bool       `json:"disabled"`
	MustChangePassword bool       `json:"must_change_password"`
	CreatedAt          time.Time  `json:"created_at"`
	LastSignInAt       *time.Time `json:"last_sign_in_at,omitempty"`
}

func adminDTO(a appliance.AdminAccount, now time.Time) AdminDTO {
	d := AdminDTO{ID: a.ID, Name: a.Name, Role: a.Role, Failures: a.Failures, Locked: a.Locked(now),
		SecondFactorSerial: a.SecondFactorSerial, Disabled: a.Disabled, MustChangePassword: a.MustChangePassword,
		CreatedAt: a.CreatedAt.UTC()}
	if d.Locked {
		t := a.LockedUntil.UTC()
		d.LockedUntil = &t
	}
	if !a.LastLoginAt.IsZero() {
		t := a.LastLoginAt.UTC()
		d.LastSignInAt = &t
	}
	return d
}

// NewAdminDTO answers a create or a password reset: Password is set only
// when tokend generated it, and is shown this once.
type NewAdminDTO struct {
	AdminDTO
	Password string `json:"password,omitempty"`
}

// createAdminRequest: an empty password makes tokend generate a one-time
// one. The password is a Secret so it redacts itself if ever printed.
type createAdminRequest struct {
	Name               string           `json:"name"`
	Role               string           `json:"role"`
	Password           appliance.Secret `json:"password"`
	SecondFactorSerial string           `json:"second_factor_serial"`
}

type adminPasswordRequest struct {
	Password appliance.Secret `json:"password"`
}

type adminSecondFactorRequest struct {
	Serial string `json:"serial"`
}

func (s *Server) listAdmins(c *gin.Context) {
	list, err := s.svc.ListAdmins(ctx(c))
	if err != nil {
		s.WriteError(c, err)
		return
	}
	now := s.now()
	render(c, http.StatusOK, List[AdminDTO]{Items: mapDTO(list, func(a appliance.AdminAccount) AdminDTO { return adminDTO(a, now) })})
}

func (s *Server) getAdmin(c *gin.Context) {
	a, err := s.svc.GetAdmin(ctx(c), c.Param("name"))
	if err != nil {
		s.WriteError(c, err)
		return
	}
	render(c, http.StatusOK, adminDTO(a, s.now()))
}

func (s *Server) createAdmin(c *gin.Context) {
	var req createAdminRequest
	if err := decodeJSON(c, &req); err != nil {
		s.WriteError(c, err)
		return
	}
	a, generated, err := s.svc.CreateAdmin(ctx(c), appliance.NewAdmin{Name: req.Name, Role: req.Role,
		Password: req.Password, SecondFactorSerial: req.SecondFactorSerial})
	if err != nil {
		s.WriteError(c, err)
		return
	}
	c.Header("Cache-Control", "no-store")
	render(c, http.StatusCreated, NewAdminDTO{AdminDTO: adminDTO(a, s.now()), Password: generated.Reveal()})
}

// resetAdminPassword sets the password given, or with no body (or no
// password in it) a generated one-time password, answered once.
func (s *Server) resetAdminPassword(c *gin.Context) {
	var req adminPasswordRequest
	if c.Request.ContentLength != 0 || c.GetHeader("Content-Type") != "" {
		if err := decodeJSON(c, &req); err != nil {
			s.WriteError(c, err)
			return
		}
	}
	a, generated, err := s.svc.ResetAdminPassword(ctx(c), c.Param("name"), req.Password)
	if err != nil {
		s.WriteError(c, err)
		return
	}
	c.Header("Cache-Control", "no-store")
	render(c, http.StatusOK, NewAdminDTO{AdminDTO: adminDTO(a, s.now()), Password: generated.Reveal()})
}

func (s *Server) setAdminDisabled(disabled bool) gin.HandlerFunc {
	return func(c *gin.Context) {
		a, err := s.svc.SetAdminDisabled(ctx(c), c.Param("name"), disabled)
		if err != nil {
			s.WriteError(c, err)
			return
		}
		render(c, http.StatusOK, adminDTO(a, s.now()))
	}
}

// setAdminSecondFactor binds a token (serial) or, with "", removes the
// second factor.
func (s *Server) setAdminSecondFactor(c *gin.Context) {
	var req adminSecondFactorRequest
	if err := decodeJSON(c, &req); err != nil {
		s.WriteError(c, err)
		return
	}
	if err := s.svc.SetAdminSecondFactor(ctx(c), c.Param("name"), req.Serial); err != nil {
		s.WriteError(c, err)
		return
	}
	s.getAdmin(c)
}

func (s *Server) deleteAdmin(c *gin.Context) {
	if err := s.svc.DeleteAdmin(ctx(c), c.Param("name")); err != nil {
		s.WriteError(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}

// unlockAdmin clears a console admin's sign-in lockout (superadmin only).
func (s *Server) unlockAdmin(c *gin.Context) {
	a, err := s.svc.UnlockAdmin(ctx(c), c.Param("name"))
	if err != nil {
		s.WriteError(c, err)
		return
	}
	render(c, http.StatusOK, adminDTO(a, s.now()))
}
