package appliance

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Agent kinds: the doors through which agents ask tokend to verify a
// passcode.
const (
	AgentRADIUS = "radius"
	AgentREST   = "rest"
)

// Agent is an authentication agent an admin registered: a RADIUS client
// (identified by its source address, holding a shared secret) or a client of
// the RSA SecurID Authentication API (holding an access key). Secrets are
// kept only sealed (the RADIUS secret, which tokend needs back to check
// packets) or as a keyed hash (the access key, which tokend only compares).
type Agent struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	Kind string `json:"kind"`
	// Address is the RADIUS client's IP address or CIDR prefix.
	Address string `json:"address,omitempty"`
	Secret  Sealed `json:"secret,omitempty"`
	KeyHash []byte `json:"key_hash,omitempty"`
	// RequireMessageAuthenticator refuses RADIUS Access-Requests without a
	// valid Message-Authenticator (BlastRADIUS, CVE-2024-3596); only old
	// gear needs it off.
	RequireMessageAuthenticator bool `json:"require_message_authenticator"`
	Enabled                     bool `json:"enabled"`
	// Sources restricts the agent to users of these identity sources
	// ("internal" or source ids); empty means every user.
	Sources    []string  `json:"sources,omitempty"`
	CreatedAt  time.Time `json:"created_at"`
	UpdatedAt  time.Time `json:"updated_at"`
	LastUsedAt time.Time `json:"last_used_at,omitzero"`
}

// AgentInput creates or replaces an agent. Nil pointers take defaults on
// create (enabled, Message-Authenticator required) and keep the stored value
// on update; an empty Secret means "generate one" on create and "keep" on
// update.
type AgentInput struct {
	Name                        string
	Kind                        string
	Address                     string
	Secret                      Secret
	RequireMessageAuthenticator *bool
	Enabled                     *bool
	Sources                     []string
}

// RADIUSClient is an enabled RADIUS agent with its shared secret, for the
// RADIUS door only.
type RADIUSClient struct {
	Agent
	Prefix       netip.Prefix
	SharedSecret Secret
}

const (
	pfxAgent      = "ag/"
	pfxAgentName  = "agi/n/"
	pfxAgentKey   = "agi/k/"
	agentHashDom  = "agent-access-key"
	agentKeyPfx   = "tka_"
	minRADIUSSecr = 16
	maxSecret     = 128
)

func agentKey(id string) []byte       { return []byte(pfxAgent + id) }
func agentNameKey(name string) []byte { return []byte(pfxAgentName + fold(name)) }
func agentKeyIdx(hash []byte) []byte  { return []byte(pfxAgentKey + hex.EncodeToString(hash)) }
func agentSecretAAD(id string) string { return "agent/" + id + "/radius-secret" }
func agentActor(a *Agent) Actor       { return Actor{ID: "agent:" + a.ID, Name: a.Name, Role: RoleAgent} }
func (s *Service) agentsChanged()     { s.agents.gen.Add(1) }
func (s *Service) randomString(n int) (string, error) {
	b := make([]byte, n)
	if _, err := io.ReadFull(s.rand, b); err != nil {
		return "", fmt.Errorf("agent secret: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// AgentsGeneration changes whenever this Service changed an agent, so a door
// can reload its client table cheaply (it also reloads on a timer, for
// changes other nodes made).
func (s *Service) AgentsGeneration() uint64 { return s.agents.gen.Load() }

// agentState is the Service's per-node memory about agents.
type agentState struct {
	gen  atomic.Uint64 // counts agent changes (AgentsGeneration)
	seen sync.Map      // agent id → when its last use was last written (touchAgent)
}

// parsePrefix accepts an IP address or a CIDR prefix.
func parsePrefix(addr string) (netip.Prefix, error) {
	if strings.Contains(addr, "/") {
		p, err := netip.ParsePrefix(addr)
		if err != nil {
			return netip.Prefix{}, err
		}
		return p.Masked(), nil
	}
	ip, err := netip.ParseAddr(addr)
	if err != nil {
		return netip.Prefix{}, err
	}
	ip = ip.Unmap()
	return netip.PrefixFrom(ip, ip.BitLen()), nil
}

// validate checks an agent's fields; it reports every problem at once.
func (in AgentInput) validate(create bool) error {
	v := &ValidationError{}
	if strings.TrimSpace(in.Name) == "" || len(in.Name) > 128 {
		v.Add("name", "required, at most 128 characters")
	}
	switch in.Kind {
	case AgentRADIUS:
		if _, err := parsePrefix(in.Address); err != nil {
			v.Add("address", "must be an IP address or a CIDR prefix such as 192.0.2.0/24")
		}
		if in.Secret != "" && (len(in.Secret) < minRADIUSSecr || len(in.Secret) > maxSecret) {
			v.Add("secret", fmt.Sprintf("must be %d to %d characters (omit it to have tokend generate one)", minRADIUSSecr, maxSecret))
		}
	case AgentREST:
		if in.Address != "" {
			v.Add("address", "only for agents of kind radius")
		}
		if in.Secret != "" {
			v.Add("secret", "only for agents of kind radius (a rest agent gets a generated access key)")
		}
		if in.RequireMessageAuthenticator != nil {
			v.Add("require_message_authenticator", "only for agents of kind radius")
		}
	default:
		if create {
			v.Add("kind", "must be radius or rest")
		}
	}
	for _, src := range in.Sources {
		if src == "" || len(src) > 64 {
			v.Add("sources", "identity source ids, at most 64 characters each")
			break
		}
	}
	return v.Err()
}

// checkSources fails unless every source is "internal" or an existing
// identity source.
func checkSources(tx Tx, sources []string) error {
	for _, src := range sources {
		if src == SourceInternal {
			continue
		}
		ok, err := exists(tx, sourceKey(src))
		if err != nil {
			return err
		}
		if !ok {
			v := &ValidationError{}
			v.Add("sources", fmt.Sprintf("no identity source %q", src))
			return v
		}
	}
	return nil
}

// checkAddressFree refuses a RADIUS prefix another RADIUS agent already has:
// the source address must name one agent.
func checkAddressFree(tx Tx, id string, p netip.Prefix) error {
	kvs, err := tx.Scan([]byte(pfxAgent), nil, 0)
	if err != nil {
		return err
	}
	for _, kv := range kvs {
		var a Agent
		if err := decodeRecord(tx, kv.Value, &a); err != nil {
			return err
		}
		if a.ID == id || a.Kind != AgentRADIUS {
			continue
		}
		if q, err := parsePrefix(a.Address); err == nil && q == p {
			return fmt.Errorf("agent address %s is agent %q's: %w", p, a.Name, ErrExists)
		}
	}
	return nil
}

// CreateAgent registers an agent. The returned Secret is shown once: the
// generated RADIUS shared secret (empty if the admin gave one) or the REST
// access key.
func (s *Service) CreateAgent(ctx context.Context, in AgentInput) (Agent, Secret, error) {
	if err := in.validate(true); err != nil {
		return Agent{}, "", err
	}
	id, err := s.newID()
	if err != nil {
		return Agent{}, "", err
	}
	var shown Secret
	a := Agent{ID: id, Name: strings.TrimSpace(in.Name), Kind: in.Kind, Enabled: in.Enabled == nil || *in.Enabled,
		Sources: slices.Compact(slices.Sorted(slices.Values(in.Sources)))}
	switch in.Kind {
	case AgentRADIUS:
		p, _ := parsePrefix(in.Address)
		a.Address = p.String()
		if p.IsSingleIP() {
			a.Address = p.Addr().String()
		}
		a.RequireMessageAuthenticator = in.RequireMessageAuthenticator == nil || *in.RequireMessageAuthenticator
		secret := in.Secret
		if secret == "" {
			g, err := s.randomString(18)
			if err != nil {
				return Agent{}, "", err
			}
			secret, shown = Secret(g), Secret(g)
		}
		if a.Secret, err = s.sealer.Seal([]byte(secret), agentSecretAAD(id)); err != nil {
			return Agent{}, "", err
		}
	case AgentREST:
		g, err := s.randomString(32)
		if err != nil {
			return Agent{}, "", err
		}
		shown = Secret(agentKeyPfx + g)
		a.KeyHash = s.sealer.Hash(agentHashDom, []byte(shown))
	}
	err = s.change(ctx, AuditEvent{Action: "agent.create", Target: id, Detail: a.Kind}, func(tx Tx, now time.Time, _ *AuditEvent) error {
		if ok, err := exists(tx, agentNameKey(a.Name)); err != nil {
			return err
		} else if ok {
			return fmt.Errorf("agent name %q: %w", a.Name, ErrExists)
		}
		if err := checkSources(tx, a.Sources); err != nil {
			return err
		}
		if a.Kind == AgentRADIUS {
			p, _ := parsePrefix(a.Address)
			if err := checkAddressFree(tx, id, p); err != nil {
				return err
			}
		}
		rec := a
		rec.CreatedAt, rec.UpdatedAt = now, now
		if err := putJSON(tx, agentKey(id), rec); err != nil {
			return err
		}
		if err := tx.Put(agentNameKey(a.Name), []byte(id)); err != nil {
			return err
		}
		if len(a.KeyHash) > 0 {
			return tx.Put(agentKeyIdx(a.KeyHash), []byte(id))
		}
		return nil
	})
	if err != nil {
		return Agent{}, "", err
	}
	s.agentsChanged()
	out, err := s.GetAgent(ctx, id)
	return out, shown, err
}

// GetAgent returns one agent.
func (s *Service) GetAgent(ctx context.Context, id string) (Agent, error) {
	var a Agent
	err := s.store.View(ctx, func(tx Tx) error { return getAgent(tx, id, &a) })
	return a, err
}

func getAgent(tx Tx, id string, a *Agent) error {
	if err := getJSON(tx, agentKey(id), a); err != nil {
		if errors.Is(err, ErrNotFound) {
			return fmt.Errorf("agent %q: %w", id, ErrNotFound)
		}
		return err
	}
	return nil
}

// ListAgents returns every agent, by name.
func (s *Service) ListAgents(ctx context.Context) ([]Agent, error) {
	list, err := listJSON[Agent](ctx, s.store, pfxAgent)
	slices.SortFunc(list, func(a, b Agent) int { return strings.Compare(fold(a.Name), fold(b.Name)) })
	return list, err
}

// UpdateAgent replaces an agent's settings (PUT). The kind cannot change; a
// RADIUS secret given replaces the stored one.
func (s *Service) UpdateAgent(ctx context.Context, id string, in AgentInput) (Agent, error) {
	var cur Agent
	if err := s.store.View(ctx, func(tx Tx) error { return getAgent(tx, id, &cur) }); err != nil {
		return Agent{}, err
	}
	if in.Kind == "" {
		in.Kind = cur.Kind
	}
	if in.Kind != cur.Kind {
		v := &ValidationError{}
		v.Add("kind", "cannot change; delete the agent and create another")
		return Agent{}, v
	}
	if err := in.validate(false); err != nil {
		return Agent{}, err
	}
	var sealed Sealed
	if in.Secret != "" {
		var err error
		if sealed, err = s.sealer.Seal([]byte(in.Secret), agentSecretAAD(id)); err != nil {
			return Agent{}, err
		}
	}
	err := s.change(ctx, AuditEvent{Action: "agent.update", Target: id, Detail: cur.Kind}, func(tx Tx, now time.Time, _ *AuditEvent) error {
		var a Agent
		if err := getAgent(tx, id, &a); err != nil {
			return err
		}
		name := strings.TrimSpace(in.Name)
		if fold(name) != fold(a.Name) {
			if ok, err := exists(tx, agentNameKey(name)); err != nil {
				return err
			} else if ok {
				return fmt.Errorf("agent name %q: %w", name, ErrExists)
			}
			if err := tx.Delete(agentNameKey(a.Name)); err != nil {
				return err
			}
			if err := tx.Put(agentNameKey(name), []byte(id)); err != nil {
				return err
			}
		}
		a.Name = name
		a.Sources = slices.Compact(slices.Sorted(slices.Values(in.Sources)))
		if err := checkSources(tx, a.Sources); err != nil {
			return err
		}
		if in.Enabled != nil {
			a.Enabled = *in.Enabled
		}
		if a.Kind == AgentRADIUS {
			p, _ := parsePrefix(in.Address)
			if err := checkAddressFree(tx, id, p); err != nil {
				return err
			}
			a.Address = p.String()
			if p.IsSingleIP() {
				a.Address = p.Addr().String()
			}
			if in.RequireMessageAuthenticator != nil {
				a.RequireMessageAuthenticator = *in.RequireMessageAuthenticator
			}
			if sealed != nil {
				a.Secret = sealed
			}
		}
		a.UpdatedAt = now
		return putJSON(tx, agentKey(id), a)
	})
	if err != nil {
		return Agent{}, err
	}
	s.agentsChanged()
	return s.GetAgent(ctx, id)
}

// DeleteAgent removes an agent; its key or secret stops working at once.
func (s *Service) DeleteAgent(ctx context.Context, id string) error {
	err := s.change(ctx, AuditEvent{Action: "agent.delete", Target: id}, func(tx Tx, _ time.Time, _ *AuditEvent) error {
		var a Agent
		if err := getAgent(tx, id, &a); err != nil {
			return err
		}
		if err := tx.Delete(agentKey(id)); err != nil {
			return err
		}
		if err := tx.Delete(agentNameKey(a.Name)); err != nil {
			return err
		}
		if len(a.KeyHash) > 0 {
			return tx.Delete(agentKeyIdx(a.KeyHash))
		}
		return nil
	})
	if err == nil {
		s.agentsChanged()
	}
	return err
}

// RADIUSClients returns the enabled RADIUS agents with their unsealed
// shared secrets, most specific prefix first, for the RADIUS door.
func (s *Service) RADIUSClients(ctx context.Context) ([]RADIUSClient, error) {
	agents, err := s.ListAgents(ctx)
	if err != nil {
		return nil, err
	}
	var out []RADIUSClient
	for _, a := range agents {
		if a.Kind != AgentRADIUS || !a.Enabled {
			continue
		}
		p, err := parsePrefix(a.Address)
		if err != nil {
			return nil, fmt.Errorf("agent %s: address: %w", a.ID, err)
		}
		secret, err := s.sealer.Open(a.Secret, agentSecretAAD(a.ID))
		if err != nil {
			return nil, fmt.Errorf("agent %s: %w", a.ID, err)
		}
		a.Secret = nil
		out = append(out, RADIUSClient{Agent: a, Prefix: p, SharedSecret: Secret(secret)})
	}
	slices.SortStableFunc(out, func(x, y RADIUSClient) int { return y.Prefix.Bits() - x.Prefix.Bits() })
	return out, nil
}

// HasRADIUSAgents reports whether any RADIUS agent exists (enabled or not):
// the RADIUS listener is bound only then.
func (s *Service) HasRADIUSAgents(ctx context.Context) (bool, error) {
	agents, err := s.ListAgents(ctx)
	if err != nil {
		return false, err
	}
	return slices.ContainsFunc(agents, func(a Agent) bool { return a.Kind == AgentRADIUS }), nil
}

// AuthenticateAgentKey maps a REST access key to its enabled agent. Any
// failure is ErrUnauthenticated, so a caller cannot tell an unknown key
// from a disabled agent.
func (s *Service) AuthenticateAgentKey(ctx context.Context, key string) (Agent, error) {
	if !strings.HasPrefix(key, agentKeyPfx) || len(key) > 128 {
		return Agent{}, ErrUnauthenticated
	}
	hash := s.sealer.Hash(agentHashDom, []byte(key))
	var a Agent
	err := s.store.View(ctx, func(tx Tx) error {
		id, err := tx.Get(agentKeyIdx(hash))
		if errors.Is(err, ErrNotFound) {
			return ErrUnauthenticated
		} else if err != nil {
			return err
		}
		if err := getAgent(tx, string(id), &a); errors.Is(err, ErrNotFound) {
			return ErrUnauthenticated
		} else if err != nil {
			return err
		}
		return nil
	})
	if err != nil {
		return Agent{}, err
	}
	if !a.Enabled || a.Kind != AgentREST {
		return Agent{}, ErrUnauthenticated
	}
	return a, nil
}

// lastUsedEvery bounds how often an agent's last-use time is written: a
// write per authentication would double the store's work for nothing.
const lastUsedEvery = time.Minute

// AgentAuthenticate decides an authentication attempt an agent relays, with
// the same rules as Authenticate. The audit record names the agent as the
// actor; the agent's identity-source restriction applies, and a challenge
// session it opens can be continued only by the same agent.
func (s *Service) AgentAuthenticate(ctx context.Context, agent Agent, req AuthRequest) (AuthResult, error) {
	req.agentID, req.sources = agent.ID, agent.Sources
	res, err := s.Authenticate(WithActor(ctx, agentActor(&agent)), req)
	if err != nil {
		return res, err
	}
	s.touchAgent(ctx, agent.ID)
	return res, nil
}

// touchAgent records the agent's last use, at most once per lastUsedEvery
// per agent and node. A failure only delays the time shown.
func (s *Service) touchAgent(ctx context.Context, id string) {
	now := s.now().UTC()
	if v, ok := s.agents.seen.Load(id); ok && now.Sub(v.(time.Time)) < lastUsedEvery {
		return
	}
	s.agents.seen.Store(id, now)
	err := s.store.Update(ctx, func(tx Tx) error {
		var a Agent
		if err := getAgent(tx, id, &a); err != nil {
			return err
		}
		a.LastUsedAt = now
		return putJSON(tx, agentKey(id), a)
	})
	if err != nil && !errors.Is(err, ErrNotFound) {
		s.log.Warn("recording an agent's last use", "agent", id, "err", err)
	}
}
