// Package rsarest is the door of the RSA SecurID Authentication API
// (REST, /mfa/v1_1/authn/...), so agents written for RSA Authentication
// Manager can be pointed at tokend unchanged. Each call is relayed to the
// Service's authentication rules; an attempt between calls lives in the
// store (any tokend node can continue it), bound to the agent that opened
// it, and expires with the challenge sessions.
package rsarest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"

	"tokend/appliance"
)

// Service is what the REST door needs of the appliance.
type Service interface {
	AuthenticateAgentKey(ctx context.Context, key string) (appliance.Agent, error)
	AgentAuthenticate(ctx context.Context, agent appliance.Agent, req appliance.AuthRequest) (appliance.AuthResult, error)
	SaveAuthAttempt(ctx context.Context, a *appliance.AuthAttempt) error
	TakeAuthAttempt(ctx context.Context, agentID, id string) (appliance.AuthAttempt, error)
}

// Recorder counts decisions by agent kind ("rest") and result.
type Recorder interface {
	AgentAuthentication(kind, result string)
}

// Config configures the handler. Service is required.
type Config struct {
	Service  Service
	Logger   *slog.Logger
	Recorder Recorder
	// PINMinLength, PINMaxLength and PINAlphanumeric describe the PIN a
	// new-PIN challenge asks for (they only word the prompt; the Service
	// enforces the policy).
	PINMinLength, PINMaxLength int
	PINAlphanumeric            bool
	Rand                       io.Reader
}

// BasePath is where the API lives.
const BasePath = "/mfa/v1_1/authn/"

// maxBody bounds a request body: these documents are a few hundred bytes.
const maxBody = 64 << 10

// Handler serves the API.
type Handler struct {
	cfg Config
	log *slog.Logger
	mux *http.ServeMux
}

// New builds the handler.
func New(cfg Config) (*Handler, error) {
	if cfg.Service == nil {
		return nil, errors.New("rsarest: Service is required")
	}
	if cfg.PINMinLength <= 0 {
		cfg.PINMinLength = 4
	}
	if cfg.PINMaxLength < cfg.PINMinLength {
		cfg.PINMaxLength = 8
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Reader
	}
	h := &Handler{cfg: cfg, log: cfg.Logger, mux: http.NewServeMux()}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	if h.cfg.Recorder == nil {
		h.cfg.Recorder = nopRecorder{}
	}
	h.mux.HandleFunc("POST "+BasePath+"initialize", h.agent(h.initialize))
	h.mux.HandleFunc("POST "+BasePath+"verify", h.agent(h.verify))
	h.mux.HandleFunc("POST "+BasePath+"cancel", h.agent(h.cancel))
	h.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, Response{AttemptResponseCode: CodeError, AttemptReasonCode: "NOT_FOUND",
			Message: "no such endpoint; the API is POST " + BasePath + "initialize, verify and cancel"})
	})
	return h, nil
}

type nopRecorder struct{}

func (nopRecorder) AgentAuthentication(string, string) {}

// ServeHTTP serves the API.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

// agent authenticates the caller by its client-key. A wrong key is 401
// whatever the reason (unknown, disabled, deleted), so the answer never
// says whether an agent exists.
func (h *Handler) agent(next func(http.ResponseWriter, *http.Request, appliance.Agent)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		a, err := h.cfg.Service.AuthenticateAgentKey(r.Context(), r.Header.Get("client-key"))
		if err != nil {
			if !errors.Is(err, appliance.ErrUnauthenticated) {
				h.log.Error("rsarest: checking a client-key", "err", err)
				writeJSON(w, http.StatusServiceUnavailable, Response{AttemptResponseCode: CodeError, AttemptReasonCode: "SERVICE_UNAVAILABLE",
					Message: "the authentication service is unavailable; retry"})
				return
			}
			writeJSON(w, http.StatusUnauthorized, Response{AttemptResponseCode: CodeError, AttemptReasonCode: "UNAUTHORIZED",
				Message: "a valid client-key header is required"})
			return
		}
		next(w, r, a)
	}
}

func writeJSON(w http.ResponseWriter, status int, v Response) {
	if v.CredentialValidationResults == nil {
		v.CredentialValidationResults = []CredentialValidationResult{}
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// decode reads one JSON document. Its error is safe to show: it names
// offsets and fields, never values.
func decode(r *http.Request, w http.ResponseWriter, dst any) error {
	body := http.MaxBytesReader(w, r.Body, maxBody)
	dec := json.NewDecoder(body)
	if err := dec.Decode(dst); err != nil {
		var syn *json.SyntaxError
		var ute *json.UnmarshalTypeError
		var mbe *http.MaxBytesError
		switch {
		case errors.As(err, &syn):
			return fmt.Errorf("malformed JSON at byte %d", syn.Offset)
		case errors.As(err, &ute):
			return fmt.Errorf("field %q has the wrong type", ute.Field)
		case errors.As(err, &mbe):
			return fmt.Errorf("body larger than %d bytes", maxBody)
		case errors.Is(err, io.EOF):
			return errors.New("empty body")
		}
		return errors.New("malformed JSON")
	}
	if dec.More() {
		return errors.New("the body must hold exactly one JSON document")
	}
	return nil
}

func badRequest(w http.ResponseWriter, ctx Context, msg string) {
	writeJSON(w, http.StatusBadRequest, Response{Context: ctx, AttemptResponseCode: CodeError, AttemptReasonCode: "INVALID_REQUEST", Message: msg})
}

func (h *Handler) newMessageID() (string, error) {
	var b [16]byte
	if _, err := io.ReadFull(h.cfg.Rand, b[:]); err != nil {
		return "", err
	}
	return hex.EncodeToString(b[:]), nil
}

// credential returns the value collected for method, if the request has it.
func credential(creds []SubjectCredential, method string) (string, bool) {
	for _, c := range creds {
		if c.MethodID != method {
			continue
		}
		for _, in := range c.CollectedInputs {
			if in.Name == method {
				return in.Value, true
			}
		}
		if len(c.CollectedInputs) == 1 {
			return c.CollectedInputs[0].Value, true
		}
	}
	return "", false
}

const (
	maxSubject  = 256
	maxPasscode = 64
)

func (h *Handler) initialize(w http.ResponseWriter, r *http.Request, agent appliance.Agent) {
	var req InitializeRequest
	if err := decode(r, w, &req); err != nil {
		badRequest(w, Context{}, err.Error())
		return
	}
	in := Context{InResponseTo: req.Context.MessageID}
	if req.SubjectName == "" || len(req.SubjectName) > maxSubject {
		badRequest(w, in, fmt.Sprintf("subjectName is required, at most %d characters", maxSubject))
		return
	}
	att := appliance.AuthAttempt{AgentID: agent.ID, UserName: req.SubjectName}
	if len(req.SubjectCredentials) == 0 {
		// Nothing collected yet: ask for the passcode.
		h.challenge(w, r, &att, in, MethodSecurID, nil, passcodePrompt("SecurID.Resource.Prompt.Passcode", "Enter passcode:"))
		return
	}
	passcode, ok := credential(req.SubjectCredentials, MethodSecurID)
	if !ok || passcode == "" || len(passcode) > maxPasscode {
		badRequest(w, in, "subjectCredentials must carry a SECURID value (the passcode), at most 64 characters")
		return
	}
	h.decide(w, r, agent, att, in, MethodSecurID, passcode)
}

func (h *Handler) verify(w http.ResponseWriter, r *http.Request, agent appliance.Agent) {
	var req VerifyRequest
	if err := decode(r, w, &req); err != nil {
		badRequest(w, Context{}, err.Error())
		return
	}
	in := Context{AuthnAttemptID: req.Context.AuthnAttemptID, InResponseTo: req.Context.MessageID}
	att, err := h.cfg.Service.TakeAuthAttempt(r.Context(), agent.ID, req.Context.AuthnAttemptID)
	if errors.Is(err, appliance.ErrNotFound) {
		h.fail(w, r, in, "", "AUTHN_ATTEMPT_NOT_FOUND")
		return
	}
	if err != nil {
		h.unavailable(w, in, err)
		return
	}
	if req.Context.InResponseTo != att.MessageID {
		// A follow-up to an answer this attempt never gave (a replayed or
		// crossed message): the attempt ends.
		h.fail(w, r, in, att.Expect, "INVALID_MESSAGE_SEQUENCE")
		return
	}
	value, ok := credential(req.SubjectCredentials, att.Expect)
	if !ok || value == "" || len(value) > maxPasscode {
		h.fail(w, r, in, att.Expect, "METHOD_NOT_ANSWERED")
		return
	}
	h.decide(w, r, agent, att, in, att.Expect, value)
}

func (h *Handler) cancel(w http.ResponseWriter, r *http.Request, agent appliance.Agent) {
	var req CancelRequest
	if err := decode(r, w, &req); err != nil {
		badRequest(w, Context{}, err.Error())
		return
	}
	in := Context{AuthnAttemptID: req.AuthnAttemptID}
	_, err := h.cfg.Service.TakeAuthAttempt(r.Context(), agent.ID, req.AuthnAttemptID)
	switch {
	case errors.Is(err, appliance.ErrNotFound):
		writeJSON(w, http.StatusOK, Response{Context: in, AttemptResponseCode: CodeFail, AttemptReasonCode: "AUTHN_ATTEMPT_NOT_FOUND"})
	case err != nil:
		h.unavailable(w, in, err)
	default:
		writeJSON(w, http.StatusOK, Response{Context: in, AttemptResponseCode: CodeSuccess, AttemptReasonCode: "AUTHN_ATTEMPT_CANCELLED"})
	}
}

func (h *Handler) unavailable(w http.ResponseWriter, ctx Context, err error) {
	h.log.Error("rsarest: store", "err", err)
	writeJSON(w, http.StatusServiceUnavailable, Response{Context: ctx, AttemptResponseCode: CodeError, AttemptReasonCode: "SERVICE_UNAVAILABLE",
		Message: "the authentication service is unavailable; retry"})
}

// decide relays one collected value to the Service and answers.
func (h *Handler) decide(w http.ResponseWriter, r *http.Request, agent appliance.Agent, att appliance.AuthAttempt, in Context, method, value string) {
	res, err := h.cfg.Service.AgentAuthenticate(r.Context(), agent, appliance.AuthRequest{UserName: att.UserName, Passcode: value, Session: att.Session})
	if err != nil {
		h.unavailable(w, in, err)
		return
	}
	h.cfg.Recorder.AgentAuthentication(appliance.AgentREST, res.Result)
	switch res.Result {
	case appliance.AuthAccept:
		id, err := h.newMessageID()
		if err != nil {
			h.unavailable(w, in, err)
			return
		}
		if in.AuthnAttemptID == "" {
			// A one-call success still names an attempt, as RSA does.
			in.AuthnAttemptID = id
		}
		in.MessageID = id
		writeJSON(w, http.StatusOK, Response{Context: in, AttemptResponseCode: CodeSuccess, AttemptReasonCode: "CREDENTIAL_VERIFIED",
			CredentialValidationResults: []CredentialValidationResult{{MethodID: method, MethodResponseCode: CodeSuccess, AuthnAttributes: []string{}}}})
	case appliance.AuthNextTokencode:
		att.Session = res.Session
		if res.Reason == appliance.ReasonPINChanged {
			h.challenge(w, r, &att, in, MethodSecurID, &method, passcodePrompt("SecurID.Resource.Prompt.New.PIN.Accepted",
				"PIN accepted. Wait for the tokencode to change, then enter a new passcode:"))
			return
		}
		h.challenge(w, r, &att, in, MethodNextTokencode, &method, passcodePrompt("SecurID.Resource.Prompt.Next.Tokencode", "Enter next token code:"))
	case appliance.AuthNewPIN:
		att.Session = res.Session
		if res.PIN != "" {
			// tokend chose the PIN: tell it once, then ask for a passcode
			// made with it.
			p := passcodePrompt("SecurID.Resource.Prompt.System.Generated.PIN",
				"Your new PIN is "+res.PIN.Reveal()+". Wait for the tokencode to change, then enter a new passcode:")
			p.PromptArgs = []string{res.PIN.Reveal()}
			h.challenge(w, r, &att, in, MethodSecurID, &method, p)
			return
		}
		text := fmt.Sprintf("Enter a new PIN of %d to %d digits:", h.cfg.PINMinLength, h.cfg.PINMaxLength)
		re := fmt.Sprintf("^[0-9]{%d,%d}$", h.cfg.PINMinLength, h.cfg.PINMaxLength)
		if h.cfg.PINAlphanumeric {
			text = fmt.Sprintf("Enter a new PIN of %d to %d letters or digits:", h.cfg.PINMinLength, h.cfg.PINMaxLength)
			re = fmt.Sprintf("^[0-9A-Za-z]{%d,%d}$", h.cfg.PINMinLength, h.cfg.PINMaxLength)
		}
		if res.Reason == appliance.ReasonPINPolicy {
			text = "PIN rejected. " + text
		}
		p := passcodePrompt("SecurID.Resource.Prompt.New.PIN", text)
		p.FormatRegex, p.ValueBeingDefined = &re, true
		p.MinLength, p.MaxLength = &h.cfg.PINMinLength, &h.cfg.PINMaxLength
		h.challenge(w, r, &att, in, MethodNewPIN, &method, p)
	default:
		h.fail(w, r, in, method, "AUTHENTICATION_DENIED")
	}
}

func (h *Handler) fail(w http.ResponseWriter, _ *http.Request, in Context, method, reason string) {
	id, err := h.newMessageID()
	if err != nil {
		h.unavailable(w, in, err)
		return
	}
	in.MessageID = id
	resp := Response{Context: in, AttemptResponseCode: CodeFail, AttemptReasonCode: reason}
	if method != "" {
		resp.CredentialValidationResults = []CredentialValidationResult{{MethodID: method, MethodResponseCode: CodeFail, AuthnAttributes: []string{}}}
	}
	writeJSON(w, http.StatusOK, resp)
}

func passcodePrompt(resource, text string) Prompt {
	return Prompt{PromptResourceID: resource, DefaultText: text, Sensitive: true, PromptArgs: []string{}}
}

// challenge stores the attempt (expecting method next) and answers
// CHALLENGE. answered is the method the request carried, if any.
func (h *Handler) challenge(w http.ResponseWriter, r *http.Request, att *appliance.AuthAttempt, in Context, method string, answered *string, p Prompt) {
	id, err := h.newMessageID()
	if err != nil {
		h.unavailable(w, in, err)
		return
	}
	att.Expect, att.MessageID = method, id
	if in.AuthnAttemptID != "" {
		att.ID = in.AuthnAttemptID
	}
	if err := h.cfg.Service.SaveAuthAttempt(r.Context(), att); err != nil {
		h.unavailable(w, in, err)
		return
	}
	in.AuthnAttemptID, in.MessageID = att.ID, id
	resp := Response{Context: in, AttemptResponseCode: CodeChallenge, AttemptReasonCode: "AUTHENTICATION_REQUIRED",
		ChallengeMethods: &ChallengeMethods{Challenges: []Challenge{{RequiredMethods: []RequiredMethod{{MethodID: method,
			Versions: []Version{{VersionID: "1.0.0", MethodAttributes: []string{}, ValueRequired: true, Prompt: p}}}}}}}}
	if answered != nil {
		reason := strings.ToUpper(method) + "_REQUIRED"
		resp.CredentialValidationResults = []CredentialValidationResult{{MethodID: *answered, MethodResponseCode: CodeChallenge,
			MethodReasonCode: &reason, AuthnAttributes: []string{}}}
	}
	writeJSON(w, http.StatusOK, resp)
}
