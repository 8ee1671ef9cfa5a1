package console

import (
	"context"
	"fmt"
	"html/template"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"tokend/appliance"
)

// Rollouts page: plan a rollout to a group (a dry run), read its plan,
// apply it and follow the progress bar, then download the two CSV files of
// deliveries (links, codes), each once. The rules are the Service's
// (appliance/rollouts.go); the API has the same actions (admin/rollouts.go).

// rolloutsService is what these pages need beyond the console's Service.
type rolloutsService interface {
	PlanRollout(ctx context.Context, req appliance.RolloutRequest) (appliance.Rollout, error)
	GetRollout(ctx context.Context, id string) (appliance.Rollout, error)
	ListRollouts(ctx context.Context, limit int) ([]appliance.Rollout, error)
	ListRolloutItems(ctx context.Context, id string, after, limit int, status string) (appliance.RolloutItemPage, error)
	StartRollout(ctx context.Context, id string) (appliance.Rollout, error)
	CancelRollout(ctx context.Context, id string) (appliance.Rollout, error)
	ExportRollout(ctx context.Context, id, part string, start func(name, mediaType string) io.Writer) error
	TakeRolloutDelivery(ctx context.Context, id string, seq int) (appliance.RolloutDelivery, error)
}

// rolloutPageNames are the templates of these pages.
var rolloutPageNames = []string{"rollouts", "rollout", "rollout_delivery"}

func (c *Console) mountRollouts(r gin.IRoutes) {
	r.GET("/rollouts", c.signedIn(readers...), c.rollouts)
	r.POST("/rollouts", c.signedIn(superOnly...), c.planRollout)
	r.GET("/rollouts/:id", c.signedIn(readers...), c.rollout)
	r.POST("/rollouts/:id/apply", c.signedIn(superOnly...), c.applyRollout)
	r.POST("/rollouts/:id/cancel", c.signedIn(superOnly...), c.cancelRollout)
	r.POST("/rollouts/:id/export/:part", c.signedIn(superOnly...), c.exportRollout)
	r.POST("/rollouts/:id/items/:seq/delivery", c.signedIn(superOnly...), c.takeRolloutDelivery)
}

type rolloutsData struct {
	Rollouts []appliance.Rollout
	Profiles []appliance.Profile
	// Plan: the signed-in admin may plan, apply and export (super admin).
	Plan bool
}

func (c *Console) rollouts(g *gin.Context) {
	ctx := g.Request.Context()
	rs, err := c.svc.ListRollouts(ctx, 50)
	if err != nil {
		c.fail(g, err)
		return
	}
	ps, err := c.svc.ListProfiles(ctx)
	if err != nil {
		c.fail(g, err)
		return
	}
	c.render(g, http.StatusOK, "rollouts", "Rollouts", rolloutsData{Rollouts: rs, Profiles: ps,
		Plan: actorOf(g).Role == appliance.RoleSuperAdmin})
}

// planRollout reads the form: a SCIM group (source and group id), every
// user of a source (source only) or a list of users (one per line).
func (c *Console) planRollout(g *gin.Context) {
	req := appliance.RolloutRequest{Profile: g.PostForm("profile"), Delivery: g.PostForm("delivery")}
	for _, line := range strings.Split(g.PostForm("users"), "\n") {
		if u := strings.TrimSpace(line); u != "" {
			req.Users = append(req.Users, u)
		}
	}
	if src := strings.TrimSpace(g.PostForm("source")); src != "" {
		req.Group = &appliance.RolloutGroup{Source: src, ID: strings.TrimSpace(g.PostForm("group"))}
	}
	if g.PostForm("pool") == "any" {
		req.Pool.AnySoftware = true
	} else {
		req.Pool.SerialPrefix = strings.TrimSpace(g.PostForm("prefix"))
	}
	if req.Delivery == "" {
		// The profile's own method: the form need not repeat it.
		if p, err := c.svc.GetProfile(g.Request.Context(), req.Profile); err == nil {
			req.Delivery = p.DeliveryMethod
		}
	}
	if s := g.PostForm("schedule"); s != "" {
		t, err := time.Parse("2006-01-02T15:04", s)
		if err != nil {
			c.fail(g, &appliance.ValidationError{Problems: []appliance.FieldError{{Field: "schedule", Reason: "a date and time (UTC)"}}})
			return
		}
		req.Schedule = t.UTC()
	}
	r, err := c.svc.PlanRollout(g.Request.Context(), req)
	if err != nil {
		c.fail(g, err)
		return
	}
	c.sessions.setFlash(sessionOf(g), fmt.Sprintf("Planned: %d of %d users would get a token. Nothing is assigned until you apply it.",
		r.ToAssign, r.Users))
	redirect(g, "/rollouts/"+r.ID)
}

type rolloutData struct {
	Rollout  appliance.Rollout
	Items    []appliance.RolloutItem
	Next     string
	Status   string
	Percent  int
	Handled  int
	CanApply bool
	Plan     bool
	Running  bool
	Statuses []string
}

func (c *Console) rollout(g *gin.Context) {
	ctx := g.Request.Context()
	r, err := c.svc.GetRollout(ctx, g.Param("id"))
	if err != nil {
		c.fail(g, err)
		return
	}
	// A filter the page cannot have made is refused, not shown as an
	// empty or whole list.
	var problems []appliance.FieldError
	after := 0
	if a := g.Query("after"); a != "" {
		if after, err = strconv.Atoi(a); err != nil || after < 0 {
			problems = append(problems, appliance.FieldError{Field: "after", Reason: "a whole number, 0 or more"})
		}
	}
	status := g.Query("status")
	if statuses := appliance.RolloutItemStatuses(); status != "" && !slices.Contains(statuses, status) {
		problems = append(problems, appliance.FieldError{Field: "status", Reason: "one of " + strings.Join(statuses, ", ")})
	}
	if len(problems) > 0 {
		c.fail(g, &appliance.ValidationError{Problems: problems})
		return
	}
	page, err := c.svc.ListRolloutItems(ctx, r.ID, after, 100, status)
	if err != nil {
		c.fail(g, err)
		return
	}
	d := rolloutData{Rollout: r, Items: page.Items, Status: status, Handled: r.Done + r.Failed, Percent: 100,
		Plan:     actorOf(g).Role == appliance.RoleSuperAdmin,
		Running:  r.State == appliance.RolloutApplying,
		Statuses: appliance.RolloutItemStatuses()}
	d.CanApply = d.Plan && (r.State == appliance.RolloutPlanned || r.State == appliance.RolloutInterrupted)
	if r.ToAssign > 0 {
		d.Percent = d.Handled * 100 / r.ToAssign
	}
	if page.NextAfter > 0 {
		d.Next = fmt.Sprintf("?after=%d", page.NextAfter)
		if status != "" {
			d.Next += "&status=" + status
		}
	}
	c.render(g, http.StatusOK, "rollout", "Rollout", d)
}

func (c *Console) applyRollout(g *gin.Context) {
	r, err := c.svc.StartRollout(g.Request.Context(), g.Param("id"))
	if err != nil {
		c.fail(g, err)
		return
	}
	c.sessions.setFlash(sessionOf(g), "Applying: the page shows the progress.")
	redirect(g, "/rollouts/"+r.ID)
}

func (c *Console) cancelRollout(g *gin.Context) {
	r, err := c.svc.CancelRollout(g.Request.Context(), g.Param("id"))
	if err != nil {
		c.fail(g, err)
		return
	}
	c.sessions.setFlash(sessionOf(g), "Cancelled: it will not be applied, and the tokens it planned are free for other plans.")
	redirect(g, "/rollouts/"+r.ID)
}

// exportRollout downloads one part, once (a POST: a link prefetch must not
// spend it).
func (c *Console) exportRollout(g *gin.Context) {
	id, part := g.Param("id"), g.Param("part")
	if part != appliance.ExportLinks && part != appliance.ExportCodes {
		c.notFound(g)
		return
	}
	started := false
	err := c.svc.ExportRollout(g.Request.Context(), id, part, func(name, mediaType string) io.Writer {
		started = true
		g.Header("Content-Type", mediaType)
		g.Header("Content-Disposition", `attachment; filename="`+name+`"`)
		g.Status(http.StatusOK)
		return g.Writer
	})
	switch {
	case err != nil && started:
		c.log.ErrorContext(g.Request.Context(), "console: rollout export failed", "rollout", id, "part", part, "err", err)
		g.Abort()
	case err != nil:
		c.fail(g, err)
	}
}

// rolloutDeliveryData is one user's delivery on the page that hands it out:
// the page is its only copy.
type rolloutDeliveryData struct {
	RolloutID string
	D         appliance.RolloutDelivery
	// Code is the activation code (ctkip); Password the generated password
	// of the CTF link or token file.
	Code, Password string
	// Link is the device link (ctkip) or the CTF link; Href the same as a
	// clickable URL for the schemes tokend builds; QR its QR code.
	Link string
	Href template.URL
	QR   template.URL
	// LinkHasCode: the device link carries the activation code too, so it
	// is shown in person only.
	LinkHasCode bool
	// File is the .sdtid as a data: URL download, as on the seed-delivery
	// page: a second request could not fetch what is already taken.
	File template.URL
}

// takeRolloutDelivery hands out one user's delivery, once: a POST (a link
// prefetch must not spend it), answered with the page itself, not a
// redirect, so the secrets exist only in this no-store response.
func (c *Console) takeRolloutDelivery(g *gin.Context) {
	id := g.Param("id")
	seq, err := strconv.Atoi(g.Param("seq"))
	if err != nil || seq <= 0 {
		c.fail(g, &appliance.ValidationError{Problems: []appliance.FieldError{{Field: "seq", Reason: "a whole number, 1 or more"}}})
		return
	}
	d, err := c.svc.TakeRolloutDelivery(g.Request.Context(), id, seq)
	if err != nil {
		c.fail(g, err)
		return
	}
	out := rolloutDeliveryData{RolloutID: id, D: d, Password: d.Password.Reveal(), Link: d.DeviceURL.Reveal()}
	schemes := seedLinkSchemes
	switch d.Method {
	case appliance.DeliveryCTKIP:
		out.Code, schemes = d.ActivationCode.Reveal(), ctkipLinkSchemes
		out.LinkHasCode = out.Code != "" && strings.Contains(out.Link, out.Code)
	case appliance.DeliveryFile:
		out.File = dataURL("application/xml", d.File)
		clear(d.File)
	}
	if out.Link != "" {
		// The delivery is taken already: a QR code that cannot be made
		// leaves the page without it rather than losing the delivery.
		if out.QR, out.Href, err = linkQR(out.Link, schemes); err != nil {
			c.log.WarnContext(g.Request.Context(), "console: rollout delivery QR code", "rollout", id, "seq", seq, "err", err)
		}
	}
	c.render(g, http.StatusOK, "rollout_delivery", "Rollout delivery", out)
}
