package console

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"

	"github.com/gin-gonic/gin"

	"tokend/appliance"
)

// Administrators (superadmin only): the console's admin accounts — list,
// create (a generated password is shown once, in the answer to the form),
// reset a password (likewise), disable and enable, delete after a
// confirmation page. And every admin's own password page, which is the only
// page an admin signed in with a one-time password may use until they have
// chosen a new one (signedIn enforces it).

// adminsService is what these pages call of the Service.
type adminsService interface {
	ListAdmins(ctx context.Context) ([]appliance.AdminAccount, error)
	CreateAdmin(ctx context.Context, in appliance.NewAdmin) (appliance.AdminAccount, appliance.Secret, error)
	ResetAdminPassword(ctx context.Context, name string, password appliance.Secret) (appliance.AdminAccount, appliance.Secret, error)
	SetAdminDisabled(ctx context.Context, name string, disabled bool) (appliance.AdminAccount, error)
	DeleteAdmin(ctx context.Context, name string) error
	ChangeAdminPassword(ctx context.Context, name string, current, next appliance.Secret) error
}

// adminPageNames are the templates of these pages.
var adminPageNames = []string{"admins", "admin_delete", "password"}

const passwordPath = Prefix + "/password"

func (c *Console) mountAdmins(r *gin.RouterGroup) {
	r.GET("/password", c.signedIn(readers...), c.passwordForm)
	r.POST("/password", c.signedIn(readers...), c.changePassword)
	r.GET("/admins", c.signedIn(superOnly...), c.admins)
	r.POST("/admins", c.signedIn(superOnly...), c.createAdmin)
	r.POST("/admins/password", c.signedIn(superOnly...), c.resetAdminPassword)
	r.POST("/admins/disable", c.signedIn(superOnly...), c.setAdminDisabled(true))
	r.POST("/admins/enable", c.signedIn(superOnly...), c.setAdminDisabled(false))
	r.GET("/admins/delete", c.signedIn(superOnly...), c.deleteAdminForm)
	r.POST("/admins/delete", c.signedIn(superOnly...), c.deleteAdmin)
}

// allowedWhileMustChange are the routes an admin with a one-time password
// may use: the password page and signing out.
func allowedWhileMustChange(route string) bool {
	return route == passwordPath || route == Prefix+"/logout"
}

type adminsData struct {
	List []appliance.AdminAccount
	Self string // the signed-in admin, whose row has no disable or delete
	// Shown is a generated one-time password, shown once, for ShownFor.
	Shown, ShownFor string
	Form            struct{ Name, Role, SecondFactor string }
}

func (c *Console) adminsPage(g *gin.Context, status int, d adminsData) {
	list, err := c.svc.ListAdmins(g.Request.Context())
	if err != nil {
		c.fail(g, err)
		return
	}
	d.List, d.Self = list, actorOf(g).Name
	c.render(g, status, "admins", "Administrators", d)
}

func (c *Console) admins(g *gin.Context) { c.adminsPage(g, http.StatusOK, adminsData{}) }

// adminsFormError shows the Administrators page again with the reason, or
// the error page for internal errors.
func (c *Console) adminsFormError(g *gin.Context, err error, d adminsData) {
	c.formError(g, err, func(status int) { c.adminsPage(g, status, d) })
}

func (c *Console) createAdmin(g *gin.Context) {
	in := appliance.NewAdmin{Name: strings.TrimSpace(g.PostForm("name")), Role: g.PostForm("role"),
		Password: appliance.Secret(g.PostForm("password")), SecondFactorSerial: strings.TrimSpace(g.PostForm("second_factor"))}
	a, shown, err := c.svc.CreateAdmin(g.Request.Context(), in)
	if err != nil {
		d := adminsData{}
		d.Form.Name, d.Form.Role, d.Form.SecondFactor = in.Name, in.Role, in.SecondFactorSerial
		c.adminsFormError(g, err, d)
		return
	}
	c.sessions.setFlash(sessionOf(g), "Administrator "+a.Name+" created.")
	c.adminsPage(g, http.StatusCreated, adminsData{Shown: shown.Reveal(), ShownFor: a.Name})
}

// resetAdminPassword gives the admin a generated one-time password, shown
// once on the answer page.
func (c *Console) resetAdminPassword(g *gin.Context) {
	a, shown, err := c.svc.ResetAdminPassword(g.Request.Context(), g.PostForm("name"), "")
	if err != nil {
		c.adminsFormError(g, err, adminsData{})
		return
	}
	c.sessions.setFlash(sessionOf(g), "Password of "+a.Name+" reset.")
	c.adminsPage(g, http.StatusOK, adminsData{Shown: shown.Reveal(), ShownFor: a.Name})
}

func (c *Console) setAdminDisabled(disabled bool) gin.HandlerFunc {
	return func(g *gin.Context) {
		a, err := c.svc.SetAdminDisabled(g.Request.Context(), g.PostForm("name"), disabled)
		if err != nil {
			c.adminsFormError(g, err, adminsData{})
			return
		}
		verb := "enabled"
		if disabled {
			verb = "disabled"
		}
		c.sessions.setFlash(sessionOf(g), "Administrator "+a.Name+" "+verb+".")
		redirect(g, "/admins")
	}
}

// deleteAdminForm asks for confirmation (a page, so it works without
// JavaScript).
func (c *Console) deleteAdminForm(g *gin.Context) {
	list, err := c.svc.ListAdmins(g.Request.Context())
	if err != nil {
		c.fail(g, err)
		return
	}
	name := g.Query("name")
	i := slices.IndexFunc(list, func(a appliance.AdminAccount) bool { return strings.EqualFold(a.Name, name) })
	if i < 0 {
		c.notFound(g)
		return
	}
	c.render(g, http.StatusOK, "admin_delete", "Delete administrator", list[i])
}

func (c *Console) deleteAdmin(g *gin.Context) {
	name := g.PostForm("name")
	if err := c.svc.DeleteAdmin(g.Request.Context(), name); err != nil {
		c.adminsFormError(g, err, adminsData{})
		return
	}
	c.sessions.setFlash(sessionOf(g), "Administrator "+name+" deleted.")
	redirect(g, "/admins")
}

type passwordData struct {
	MustChange bool
}

func (c *Console) passwordForm(g *gin.Context) {
	c.render(g, http.StatusOK, "password", "Change your password", passwordData{MustChange: mustChange(g)})
}

// changePassword is the admin changing their own password: the current one
// again, the new one twice. The session id changes afterwards, like at
// sign-in.
func (c *Console) changePassword(g *gin.Context) {
	d := passwordData{MustChange: mustChange(g)}
	next := appliance.Secret(g.PostForm("new_password"))
	if next != appliance.Secret(g.PostForm("repeat_password")) {
		g.Set("console.error", "The new password and its repetition differ.")
		c.render(g, http.StatusBadRequest, "password", "Change your password", d)
		return
	}
	actor := actorOf(g)
	err := c.svc.ChangeAdminPassword(g.Request.Context(), actor.Name, appliance.Secret(g.PostForm("current_password")), next)
	switch {
	case errors.Is(err, appliance.ErrUnauthenticated):
		g.Set("console.error", "The current password is wrong.")
		c.render(g, http.StatusUnauthorized, "password", "Change your password", d)
		return
	case err != nil:
		c.formError(g, err, func(status int) { c.render(g, status, "password", "Change your password", d) })
		return
	}
	nx := c.renewSession(g, sessionOf(g), actor.Name, "The console is busy. Sign in again in a minute.")
	if nx == nil {
		return
	}
	c.sessions.setFlash(nx, "Your password has been changed.")
	redirect(g, "/")
}

const ctxMustChange = "console.must_change"

func mustChange(g *gin.Context) bool { return g.GetBool(ctxMustChange) }
