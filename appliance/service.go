package appliance

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"tokend/appliance/seal"
)

// Config is what a Service is built from. Store and Sealer are required.
type Config struct {
	Store  Store
	Sealer *seal.Sealer
	// CTKIPURL is the public CT-KIP endpoint put into distributions, e.g.
	// https://host:8444/ctkip/services/CtkipService.
	CTKIPURL string
	// DefaultCodeTTL applies to profiles created without an activation code
	// lifetime (7 days when zero).
	DefaultCodeTTL time.Duration
	Auth           AuthPolicy
	AuthRecorder   AuthRecorder
	Logger         *slog.Logger
	Now            func() time.Time
	Rand           io.Reader
	// DecodeRecord, if set, decodes stored records instead of
	// encoding/json (see RecordDecoder).
	DecodeRecord RecordDecoder
	// AdminSignIn bounds console sign-ins: the memory of argon2id work
	// and the lockout of admin accounts (see AdminSignInPolicy).
	AdminSignIn AdminSignInPolicy
	// CredentialsDir is the only directory whose files an identity source
	// may name (ca_file, bind_password_file); empty allows no file at all
	// (see ReadCredentialFile).
	CredentialsDir string
	// SpoolDir is where import bodies are spooled before they are
	// imported (os.TempDir() when empty); main passes the data dir.
	SpoolDir string
	// ReplacementGrace is how long a replaced token keeps working while
	// its replacement has not authenticated (DefaultReplacementGrace when
	// zero; lifecycle.go).
	ReplacementGrace time.Duration
	// RolloutRecorder counts the users rollouts handle (rollouts.go); nil
	// records nothing.
	RolloutRecorder RolloutRecorder
	// NodeID names this node: its audit chain and counter shares are its
	// own keys (node.go). Nodes sharing one store need distinct ids.
	// DefaultNodeID when empty.
	NodeID string
	// WriteLanes, if more than 1, lets that many Updates of this node run
	// at once on chains and counter shares of their own (node.go): for
	// stores with optimistic transactions (etcd). 0 or 1: one chain.
	WriteLanes int
}

// Service is the appliance: every use case is one method, and every
// invariant is checked inside the transaction that changes the data.
type Service struct {
	store   Store // cfg.Store, wrapped to carry DecodeRecord
	raw     Store // cfg.Store
	sealer  *seal.Sealer
	ctkip   atomic.Pointer[string]
	codeTTL time.Duration
	log     *slog.Logger
	now     func() time.Time
	rand    io.Reader
	policy  AuthPolicy
	authRec AuthRecorder
	argon   *argonPool
	signIn  adminSignIn
	credDir string
	agents  agentState // agents.go
	// spoolDir is Config.SpoolDir (imports.go).
	spoolDir string
	// handouts holds generated token files until their one download
	// (seeddelivery.go).
	handouts handouts
	// apiUse coalesces API tokens' last-use writes (apitokens.go).
	apiUse apiTokenUse
	// scimTokens maps verified SCIM tokens to their source (sources.go).
	scimTokens verifiedCache[string]
	// refusals bounds the audit of refused actions (refusals.go).
	refusals refusalLimiter
	// grace is Config.ReplacementGrace (lifecycle.go).
	grace time.Duration
	// rollouts tracks rollouts applied in the background (rollouts.go).
	rollouts rolloutRunner
	// node is Config.NodeID (node.go).
	node string
}

// New builds a Service. Call Init before serving.
func New(cfg Config) (*Service, error) {
	if cfg.Store == nil || cfg.Sealer == nil {
		return nil, errors.New("appliance: Store and Sealer are required")
	}
	if cfg.NodeID == "" {
		cfg.NodeID = DefaultNodeID
	}
	if err := ValidNodeID(cfg.NodeID); err != nil {
		return nil, fmt.Errorf("appliance: %w", err)
	}
	if cfg.WriteLanes > MaxWriteLanes {
		return nil, fmt.Errorf("appliance: %d write lanes, at most %d", cfg.WriteLanes, MaxWriteLanes)
	}
	s := &Service{store: cfg.Store, raw: cfg.Store, sealer: cfg.Sealer, codeTTL: cfg.DefaultCodeTTL,
		log: cfg.Logger, now: cfg.Now, rand: cfg.Rand, policy: cfg.Auth.withDefaults(), authRec: cfg.AuthRecorder,
		credDir: cfg.CredentialsDir, node: cfg.NodeID}
	// Every transaction carries the node id (and the record decoder).
	s.store = decodingStore{cfg.Store, cfg.DecodeRecord, cfg.NodeID, newWriteLanes(cfg.WriteLanes)}
	s.argon = newArgonPool(cfg.AdminSignIn.ArgonSlots, cfg.AdminSignIn.ArgonWait)
	s.signIn = newAdminSignIn(cfg.AdminSignIn)
	s.spoolDir = cfg.SpoolDir
	s.rollouts.rec = cfg.RolloutRecorder
	s.grace = cfg.ReplacementGrace
	if s.grace <= 0 {
		s.grace = DefaultReplacementGrace
	}
	s.SetCTKIPURL(cfg.CTKIPURL)
	if s.codeTTL <= 0 {
		s.codeTTL = 7 * 24 * time.Hour
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.rand == nil {
		s.rand = rand.Reader
	}
	return s, nil
}

// Init writes the schema version and the master key check value on first
// use, and on later starts fails with seal.ErrWrongKey if the master key is
// not the one the store was created with.
func (s *Service) Init(ctx context.Context) error {
	err := s.store.Update(ctx, func(tx Tx) error {
		if err := s.initTx(tx); err != nil {
			return err
		}
		if err := migrateSchema(tx); err != nil { // node.go
			return err
		}
		// Counters and audit indexes that stores written by an older
		// tokend lack.
		return prepareIndexes(tx)
	})
	if err != nil {
		return err
	}
	return s.loadHashKey(ctx) // rekey.go
}

// CheckStore is Init for inspection commands: it verifies the master key
// and the schema version in a read-only transaction and writes nothing, so
// a verifier leaves the store byte for byte as it found it.
func (s *Service) CheckStore(ctx context.Context) error {
	err := s.store.View(ctx, func(tx Tx) error {
		if _, err := tx.Get(keyKeyCheck); errors.Is(err, ErrNotFound) {
			return fmt.Errorf("the store was never initialised by tokend: %w", ErrInvalidState)
		}
		return s.initTx(tx)
	})
	if err != nil {
		return err
	}
	return s.loadHashKey(ctx)
}

func (s *Service) initTx(tx Tx) error {
	// A store mid-rotation holds values under two keys (rekey.go).
	if err := rekeyGuardTx(tx); err != nil {
		return err
	}
	check, err := tx.Get(keyKeyCheck)
	switch {
	case errors.Is(err, ErrNotFound):
		if err := tx.Put(keySchema, []byte(schemaVersion)); err != nil {
			return err
		}
		return tx.Put(keyKeyCheck, s.sealer.CheckValue())
	case err != nil:
		return err
	}
	if err := s.sealer.Verify(check); err != nil {
		return err
	}
	v, err := tx.Get(keySchema)
	if err != nil {
		return fmt.Errorf("schema version: %w", err)
	}
	// A schema 1 store is read as it is and migrated by Init (node.go).
	if string(v) != schemaVersion && string(v) != schemaV1 {
		return schemaError(v) // schema.go
	}
	return nil
}

// SetCTKIPURL changes the CT-KIP URL put into new distributions (main sets
// it once the listener's port is known).
func (s *Service) SetCTKIPURL(u string) { s.ctkip.Store(&u) }

// CTKIPURL returns the CT-KIP URL put into distributions.
func (s *Service) CTKIPURL() string { return *s.ctkip.Load() }

// Store returns the underlying store (for backup and metrics in main).
func (s *Service) Store() Store { return s.raw }

// newID returns a new unique id.
// IDs are UUIDv7 (RFC 9562): 48 bits of Unix milliseconds, then 74 random
// bits. Records created together get neighbouring keys, so a bulk sync or
// import dirties a few pages per commit instead of one page per record.
func (s *Service) newID() (string, error) {
	var b [16]byte
	if _, err := io.ReadFull(s.rand, b[6:]); err != nil {
		return "", fmt.Errorf("random id: %w", err)
	}
	ms := uint64(s.now().UnixMilli())
	b[0], b[1], b[2], b[3], b[4], b[5] = byte(ms>>40), byte(ms>>32), byte(ms>>24), byte(ms>>16), byte(ms>>8), byte(ms)
	b[6] = b[6]&0x0f | 0x70
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:], nil
}

type actorKey struct{}

// WithActor returns a context that carries who is acting.
func WithActor(ctx context.Context, a Actor) context.Context {
	return context.WithValue(ctx, actorKey{}, a)
}

// ActorFrom returns the actor in ctx, or the "system" actor.
func ActorFrom(ctx context.Context) Actor {
	if a, ok := ctx.Value(actorKey{}).(Actor); ok {
		return a
	}
	return Actor{ID: "system", Name: "system"}
}

// change runs fn in one transaction together with a success audit record.
// When fn fails with a domain error, the refusal is audited in a separate
// transaction so the record survives the rollback, at most once per actor
// per minute (refusals.go).
func (s *Service) change(ctx context.Context, ev AuditEvent, fn func(tx Tx, now time.Time, ev *AuditEvent) error) error {
	now := s.now().UTC()
	err := s.store.Update(ctx, func(tx Tx) error {
		e := ev
		if err := fn(tx, now, &e); err != nil {
			return err
		}
		e.Outcome = OutcomeSuccess
		return appendAudit(tx, now, ActorFrom(ctx), e)
	})
	if err != nil && isDomainError(err) {
		ev.Reason = ReasonOf(err)
		if aerr := s.recordRefusal(ctx, now, ev.Action, ev); aerr != nil {
			s.log.Error("audit write failed", "action", ev.Action, "err", aerr)
		}
	}
	return err
}

func isDomainError(err error) bool {
	var v *ValidationError
	return errors.As(err, &v) || errors.Is(err, ErrNotFound) || errors.Is(err, ErrExists) ||
		errors.Is(err, ErrConflict) || errors.Is(err, ErrLimit) || errors.Is(err, ErrInvalidState)
}

// ReasonOf names the class of a domain error for audit records and metrics.
func ReasonOf(err error) string {
	var v *ValidationError
	switch {
	case err == nil:
		return ""
	case errors.As(err, &v):
		return "invalid"
	case errors.Is(err, ErrNotFound):
		return "not_found"
	case errors.Is(err, ErrExists):
		return "exists"
	case errors.Is(err, ErrLimit):
		return "limit"
	case errors.Is(err, ErrConflict):
		return "conflict"
	case errors.Is(err, ErrInvalidState):
		return "invalid_state"
	}
	return "internal"
}

// clampLimit bounds page sizes.
func clampLimit(n int) int {
	switch {
	case n <= 0:
		return 50
	case n > 1000:
		return 1000
	}
	return n
}

func hasPrefixFold(s, prefix string) bool { return strings.HasPrefix(fold(s), fold(prefix)) }
