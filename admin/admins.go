package admin

import (
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"tokend/appliance"
)

// AdminDTO is a console admin account as the API shows it: never the
// password hash.
type AdminDTO struct {
	ID          string     `json:"id"`
	Name        string     `json:"name"`
	Role        string     `json:"role"`
	Failures    int        `json:"failures"`
	Locked      bool       `json:"locked"`
	LockedUntil *time.Time `json:"locked_until,omitempty"`
}

func adminDTO(a appliance.AdminAccount, now time.Time) AdminDTO {
	d := AdminDTO{ID: a.ID, Name: a.Name, Role: a.Role, Failures: a.Failures, Locked: a.Locked(now)}
	if d.Locked {
		t := a.LockedUntil.UTC()
		d.LockedUntil = &t
	}
	return d
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
