package admin

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"tokend/appliance"
)

// Rollouts: a plan (dry run) for a group, applied in the background; each
// user's delivery is answered once, and the deliveries of a completed
// rollout are exported once as two CSV files (links, codes) for
// split-channel mail merge. Secrets leave with Cache-Control: no-store.

// RolloutService is what the rollout endpoints call.
type RolloutService interface {
	PlanRollout(ctx context.Context, req appliance.RolloutRequest) (appliance.Rollout, error)
	GetRollout(ctx context.Context, id string) (appliance.Rollout, error)
	ListRollouts(ctx context.Context, limit int) ([]appliance.Rollout, error)
	ListRolloutItems(ctx context.Context, id string, after, limit int, status string) (appliance.RolloutItemPage, error)
	StartRollout(ctx context.Context, id string) (appliance.Rollout, error)
	CancelRollout(ctx context.Context, id string) (appliance.Rollout, error)
	TakeRolloutDelivery(ctx context.Context, id string, seq int) (appliance.RolloutDelivery, error)
	ExportRollout(ctx context.Context, id, part string, start func(name, mediaType string) io.Writer) error
}

type rolloutGroupDTO struct {
	Source string `json:"source"`
	ID     string `json:"id,omitempty"`
}

type rolloutPoolDTO struct {
	SerialPrefix          string `json:"serial_prefix,omitempty"`
	AnyUnassignedSoftware bool   `json:"any_unassigned_software,omitempty"`
}

// rolloutRequest plans a rollout: a group (a SCIM group, or every user of
// an identity source) or a list of users (ids or user names).
type rolloutRequest struct {
	Group    *rolloutGroupDTO `json:"group"`
	Users    []string         `json:"users"`
	Profile  string           `json:"profile"`
	Pool     rolloutPoolDTO   `json:"pool"`
	Delivery string           `json:"delivery"`
	Schedule *time.Time       `json:"schedule"`
}

func (r rolloutRequest) input() appliance.RolloutRequest {
	in := appliance.RolloutRequest{Users: r.Users, Profile: r.Profile, Delivery: r.Delivery,
		Pool: appliance.RolloutPool{SerialPrefix: r.Pool.SerialPrefix, AnySoftware: r.Pool.AnyUnassignedSoftware}}
	if r.Group != nil {
		in.Group = &appliance.RolloutGroup{Source: r.Group.Source, ID: r.Group.ID}
	}
	if r.Schedule != nil {
		in.Schedule = *r.Schedule
	}
	return in
}

// RolloutPlanDTO is what the dry run found.
type RolloutPlanDTO struct {
	Users         int `json:"users"`
	ToAssign      int `json:"to_assign"`
	HasProfile    int `json:"has_profile"`
	AtLimit       int `json:"at_limit"`
	Inactive      int `json:"inactive"`
	PoolShortfall int `json:"pool_shortfall"`
}

// RolloutProgressDTO is the apply's progress over the users to assign.
type RolloutProgressDTO struct {
	Total   int `json:"total"`
	Done    int `json:"done"`
	Failed  int `json:"failed"`
	Percent int `json:"percent"`
}

// RolloutDTO is a rollout without its users.
type RolloutDTO struct {
	ID              string             `json:"id"`
	State           string             `json:"state"`
	Group           *rolloutGroupDTO   `json:"group,omitempty"`
	UsersGiven      int                `json:"users_given,omitempty"`
	Profile         string             `json:"profile"`
	Pool            rolloutPoolDTO     `json:"pool"`
	Delivery        string             `json:"delivery"`
	Schedule        *time.Time         `json:"schedule"`
	Plan            RolloutPlanDTO     `json:"plan"`
	Progress        RolloutProgressDTO `json:"progress"`
	CreatedBy       string             `json:"created_by"`
	CreatedAt       time.Time          `json:"created_at"`
	UpdatedAt       time.Time          `json:"updated_at"`
	StartedAt       *time.Time         `json:"started_at"`
	FinishedAt      *time.Time         `json:"finished_at"`
	LinksExportedAt *time.Time         `json:"links_exported_at"`
	CodesExportedAt *time.Time         `json:"codes_exported_at"`
	Error           string             `json:"error,omitempty"`
}

// RolloutItemDTO is one user of a rollout. Delivery is waiting (some of it
// stored, sealed, to be taken or exported once), taken (one by one),
// exported, or none.
type RolloutItemDTO struct {
	Seq       int        `json:"seq"`
	UserID    string     `json:"user_id"`
	UserName  string     `json:"user_name"`
	Email     string     `json:"email,omitempty"`
	Serial    string     `json:"serial,omitempty"`
	Status    string     `json:"status"`
	Reason    string     `json:"reason,omitempty"`
	ExpiresAt *time.Time `json:"expires_at"`
	Delivery  string     `json:"delivery"`
}

// RolloutDetailDTO is a rollout with one page of its users.
type RolloutDetailDTO struct {
	RolloutDTO
	Items     []RolloutItemDTO `json:"items"`
	NextAfter int              `json:"next_after"`
}

// RolloutDeliveryDTO is one user's delivery, answered once: CT-KIP URL,
// activation code, expiry and device link (ctkip), the CTF link and its
// password (ctf), or the token file (base64) and its password (file).
type RolloutDeliveryDTO struct {
	Serial         string     `json:"serial"`
	Profile        string     `json:"profile"`
	Method         string     `json:"method"`
	UserID         string     `json:"user_id"`
	UserName       string     `json:"user_name"`
	Email          string     `json:"email,omitempty"`
	CTKIPURL       string     `json:"ctkip_url,omitempty"`
	ActivationCode string     `json:"activation_code,omitempty"`
	ExpiresAt      *time.Time `json:"expires_at,omitempty"`
	DeviceURL      string     `json:"device_url,omitempty"`
	Password       string     `json:"password,omitempty"`
	TokenFile      []byte     `json:"token_file,omitempty"`
}

func rolloutDTO(r appliance.Rollout) RolloutDTO {
	d := RolloutDTO{ID: r.ID, State: r.State, UsersGiven: r.UsersGiven, Profile: r.Profile, Delivery: r.Delivery,
		Pool:     rolloutPoolDTO{SerialPrefix: r.Pool.SerialPrefix, AnyUnassignedSoftware: r.Pool.AnySoftware},
		Schedule: optTime(r.Schedule),
		Plan: RolloutPlanDTO{Users: r.Users, ToAssign: r.ToAssign, HasProfile: r.HasProfile, AtLimit: r.AtLimit,
			Inactive: r.Inactive, PoolShortfall: r.PoolShortfall},
		Progress:  RolloutProgressDTO{Total: r.ToAssign, Done: r.Done, Failed: r.Failed, Percent: 100},
		CreatedBy: r.CreatedBy, CreatedAt: r.CreatedAt.UTC(), UpdatedAt: r.UpdatedAt.UTC(),
		StartedAt: optTime(r.StartedAt), FinishedAt: optTime(r.FinishedAt),
		LinksExportedAt: optTime(r.LinksExportedAt), CodesExportedAt: optTime(r.CodesExportedAt), Error: r.Error}
	if r.Group != nil {
		d.Group = &rolloutGroupDTO{Source: r.Group.Source, ID: r.Group.ID}
	}
	if r.ToAssign > 0 {
		d.Progress.Percent = (r.Done + r.Failed) * 100 / r.ToAssign
	}
	return d
}

func rolloutItemDTO(it appliance.RolloutItem) RolloutItemDTO {
	d := RolloutItemDTO{Seq: it.Seq, UserID: it.UserID, UserName: it.UserName, Email: it.Email, Serial: it.Serial,
		Status: it.Status, Reason: it.Reason, ExpiresAt: optTime(it.ExpiresAt), Delivery: "none"}
	switch {
	case it.Taken:
		d.Delivery = "taken"
	case it.Stored:
		d.Delivery = "waiting"
	case it.Status == appliance.ItemDone:
		d.Delivery = "exported"
	}
	return d
}

func (s *Server) createRollout(c *gin.Context) {
	var req rolloutRequest
	if err := decodeJSONLimit(c, &req, MaxRolloutBody); err != nil {
		s.WriteError(c, err)
		return
	}
	r, err := s.svc.PlanRollout(ctx(c), req.input())
	if err != nil {
		s.WriteError(c, err)
		return
	}
	c.Header("Location", fmt.Sprintf("%s/rollouts/%s", APIPrefix, r.ID))
	render(c, http.StatusCreated, rolloutDTO(r))
}

func (s *Server) listRollouts(c *gin.Context) {
	limit, err := queryInt(c, "limit")
	if err != nil {
		s.WriteError(c, err)
		return
	}
	rs, err := s.svc.ListRollouts(ctx(c), limit)
	if err != nil {
		s.WriteError(c, err)
		return
	}
	render(c, http.StatusOK, List[RolloutDTO]{Items: mapDTO(rs, rolloutDTO)})
}

func (s *Server) getRollout(c *gin.Context) {
	var fps []FieldProblem
	after, err := queryInt(c, "after")
	if err != nil {
		fps = append(fps, FieldProblem{"after", "must be a non-negative integer"})
	}
	limit, err := queryInt(c, "limit")
	if err != nil {
		fps = append(fps, FieldProblem{"limit", "must be a non-negative integer"})
	}
	status := c.Query("status")
	if statuses := appliance.RolloutItemStatuses(); status != "" && !slices.Contains(statuses, status) {
		fps = append(fps, FieldProblem{"status", "must be one of " + strings.Join(statuses, ", ")})
	}
	if err := invalidFields(fps...); err != nil {
		s.WriteError(c, err)
		return
	}
	r, err := s.svc.GetRollout(ctx(c), c.Param("id"))
	if err != nil {
		s.WriteError(c, err)
		return
	}
	page, err := s.svc.ListRolloutItems(ctx(c), r.ID, after, limit, status)
	if err != nil {
		s.WriteError(c, err)
		return
	}
	render(c, http.StatusOK, RolloutDetailDTO{RolloutDTO: rolloutDTO(r), Items: mapDTO(page.Items, rolloutItemDTO),
		NextAfter: page.NextAfter})
}

// applyRollout starts the apply and answers at once (202): progress is
// read with GET /rollouts/{id}.
func (s *Server) applyRollout(c *gin.Context) {
	r, err := s.svc.StartRollout(ctx(c), c.Param("id"))
	if err != nil {
		s.WriteError(c, err)
		return
	}
	c.Header("Location", fmt.Sprintf("%s/rollouts/%s", APIPrefix, r.ID))
	render(c, http.StatusAccepted, rolloutDTO(r))
}

func (s *Server) cancelRollout(c *gin.Context) {
	r, err := s.svc.CancelRollout(ctx(c), c.Param("id"))
	if err != nil {
		s.WriteError(c, err)
		return
	}
	render(c, http.StatusOK, rolloutDTO(r))
}

func (s *Server) takeRolloutDelivery(c *gin.Context) {
	seq, err := strconv.Atoi(c.Param("seq"))
	if err != nil || seq <= 0 {
		s.WriteError(c, invalid("seq", "must be a positive integer"))
		return
	}
	d, err := s.svc.TakeRolloutDelivery(ctx(c), c.Param("id"), seq)
	if err != nil {
		s.WriteError(c, err)
		return
	}
	c.Header("Cache-Control", "no-store")
	render(c, http.StatusOK, RolloutDeliveryDTO{Serial: d.Serial, Profile: d.Profile, Method: d.Method,
		UserID: d.UserID, UserName: d.UserName, Email: d.Email, CTKIPURL: d.CTKIPURL,
		ActivationCode: d.ActivationCode.Reveal(), ExpiresAt: optTime(d.ExpiresAt), DeviceURL: d.DeviceURL.Reveal(),
		Password: d.Password.Reveal(), TokenFile: d.File})
	clear(d.File)
}

// exportRollout answers one part of a completed rollout as CSV, once.
func (s *Server) exportRollout(c *gin.Context) {
	part := c.Query("part")
	if part != appliance.ExportLinks && part != appliance.ExportCodes {
		s.WriteError(c, invalid("part", "required: links or codes"))
		return
	}
	id := c.Param("id")
	started := false
	err := s.svc.ExportRollout(ctx(c), id, part, func(name, mediaType string) io.Writer {
		started = true
		c.Header("Cache-Control", "no-store")
		c.Header("Content-Disposition", `attachment; filename="`+name+`"`)
		c.Header("Content-Type", mediaType)
		c.Status(http.StatusOK)
		return c.Writer
	})
	if err != nil {
		if started {
			// The claim is spent and part of the body is out: all that is
			// left is to log it (without the rows) and cut the answer.
			s.log.ErrorContext(c.Request.Context(), "rollout export failed", "rollout", id, "part", part, "err", err)
			c.Abort()
			return
		}
		s.WriteError(c, err)
	}
}
