package auth

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/rs/zerolog"

	"github.com/mqstreams/mqstreams/log"
)

// Errors callers branch on.
var (
	ErrUnknownUser  = errors.New("unknown user")
	ErrUserExists   = errors.New("user already exists")
	ErrConfigUser   = errors.New("user is defined in the config file; change it there")
	ErrInvalidUser  = errors.New("invalid user")
	ErrNotPersisted = errors.New("the user store has no log to persist to")
)

// User is one user as configured or created at run time.
type User struct {
	Name        string
	Credentials Credentials
	// Superuser may do everything, on both protocols and the HTTP API.
	Superuser bool
	// Rules are the user's grants.
	Rules []Rule
	// FromConfig marks users of the config file: they are not stored in the log, so
	// removing one from the file revokes it, and the run-time API cannot change them
	// (rules added at run time are kept apart and still apply).
	FromConfig bool
}

// Entries is the part of the log the store persists to (implemented by *log.Log).
type Entries interface {
	PutEntry(kind, name string, value []byte) error
	DeleteEntry(kind, name string) error
	Entries(kind string) ([]log.Entry, error)
}

// Entry kinds in the log.
const (
	userKind = "auth.user" // users created at run time
	ruleKind = "auth.acl"  // rules added at run time, per principal (users of the file too)
)

// Options configure a Store.
type Options struct {
	// Users are the users of the config file.
	Users []User
	// AllowAnonymous lets clients without credentials in, with AnonymousRules.
	AllowAnonymous bool
	// AnonymousRules are the grants of an anonymous client when AllowAnonymous is set.
	AnonymousRules []Rule
	// RefuseAnonymous is an explicit "no" to anonymous clients: without it a store
	// with no user at all is in the open demo mode (see Open).
	RefuseAnonymous bool
	// Entries persists users and rules created at run time; nil keeps them in memory.
	Entries Entries
	// Logger receives one line per change; never a secret.
	Logger zerolog.Logger
}

// Store is the one owner of users and their grants. Every check reads an immutable
// snapshot through an atomic pointer, so a change applies to the next check everywhere
// (connections already open included) without locks on the data path.
type Store struct {
	opts Options
	lg   zerolog.Logger

	mu      sync.Mutex // serialises changes
	stored  map[string]storedUser
	extra   map[string][]Rule // run-time rules by principal name
	current atomic.Pointer[snapshot]

	// cacheKey keys the in-memory cache of verified passwords (see Authenticate).
	cacheKey []byte
	cache    sync.Map // username -> verifiedPassword
}

type snapshot struct {
	users     map[string]*principalState
	anonymous *principalState // nil when anonymous clients are refused
	// open is true when no user exists at all and anonymous access is not configured:
	// the demo mode, where everything is allowed (listeners are loopback-only then).
	open bool
}

type principalState struct {
	user *User
	acl  *acl
}

// storedUser is the persisted form of a run-time user.
type storedUser struct {
	Credentials string `json:"credentials"`
	Superuser   bool   `json:"superuser,omitempty"`
	Rules       []Rule `json:"rules,omitempty"`
}

// NewStore loads the run-time users and rules from the log and combines them with the
// config's users (the file wins over a stored user of the same name).
func NewStore(o Options) (*Store, error) {
	s := &Store{opts: o, lg: o.Logger, stored: map[string]storedUser{}, extra: map[string][]Rule{}}
	s.cacheKey = make([]byte, 32)
	if _, err := rand.Read(s.cacheKey); err != nil {
		return nil, fmt.Errorf("auth cache key: %w", err)
	}
	seen := map[string]bool{}
	for _, u := range o.Users {
		if err := validateUser(u); err != nil {
			return nil, err
		}
		if seen[u.Name] {
			return nil, fmt.Errorf("%w: duplicate username %q", ErrInvalidUser, u.Name)
		}
		seen[u.Name] = true
	}
	for _, r := range o.AnonymousRules {
		if err := r.Validate(); err != nil {
			return nil, fmt.Errorf("anonymous rules: %w", err)
		}
	}
	if o.Entries != nil {
		es, err := o.Entries.Entries(userKind)
		if err != nil {
			return nil, fmt.Errorf("load users: %w", err)
		}
		for _, e := range es {
			var su storedUser
			if err := json.Unmarshal(e.Value, &su); err != nil {
				return nil, fmt.Errorf("load user %q: %w", e.Name, err)
			}
			if seen[e.Name] {
				s.lg.Warn().Str("user", e.Name).Msg("user stored at run time is also in the config file; the file wins")
			}
			s.stored[e.Name] = su
		}
		rs, err := o.Entries.Entries(ruleKind)
		if err != nil {
			return nil, fmt.Errorf("load acl rules: %w", err)
		}
		for _, e := range rs {
			var rules []Rule
			if err := json.Unmarshal(e.Value, &rules); err != nil {
				return nil, fmt.Errorf("load acl rules of %q: %w", e.Name, err)
			}
			s.extra[e.Name] = rules
		}
	}
	if err := s.rebuild(); err != nil {
		return nil, err
	}
	return s, nil
}

func validateUser(u User) error {
	if u.Name == "" {
		return fmt.Errorf("%w: empty username", ErrInvalidUser)
	}
	if len(u.Name) > 255 {
		return fmt.Errorf("%w: username longer than 255 bytes", ErrInvalidUser)
	}
	if len(u.Credentials.Bcrypt) == 0 {
		return fmt.Errorf("%w: %q has no password hash", ErrInvalidUser, u.Name)
	}
	for _, r := range u.Rules {
		if err := r.Validate(); err != nil {
			return fmt.Errorf("%w: %q: %v", ErrInvalidUser, u.Name, err)
		}
	}
	return nil
}

// rebuild makes a new snapshot from the config users, the stored users and the
// run-time rules. Called with mu held (or before the store is shared).
func (s *Store) rebuild() error {
	snap := &snapshot{users: map[string]*principalState{}}
	add := func(u User) {
		rules := append(append([]Rule(nil), u.Rules...), s.extra[u.Name]...)
		uc := u
		snap.users[u.Name] = &principalState{user: &uc, acl: compile(rules)}
	}
	for name, su := range s.stored {
		c, err := ParseCredentials(su.Credentials)
		if err != nil {
			return fmt.Errorf("stored user %q: %w", name, err)
		}
		add(User{Name: name, Credentials: c, Superuser: su.Superuser, Rules: su.Rules})
	}
	for _, u := range s.opts.Users {
		u.FromConfig = true
		add(u)
	}
	switch {
	case s.opts.AllowAnonymous:
		rules := append(append([]Rule(nil), s.opts.AnonymousRules...), s.extra[AnonymousName]...)
		snap.anonymous = &principalState{user: &User{Name: AnonymousName}, acl: compile(rules)}
	case len(snap.users) == 0 && !s.opts.RefuseAnonymous:
		snap.open = true
		snap.anonymous = &principalState{user: &User{Name: AnonymousName, Superuser: true}, acl: compile(nil)}
	}
	s.current.Store(snap)
	return nil
}

// AnonymousName is the principal name of clients without credentials (Kafka's
// User:ANONYMOUS).
const AnonymousName = "ANONYMOUS"

// Open tells whether the store is in the demo mode: no user exists and anonymous access
// was not configured, so every client may do everything. The server then listens on
// loopback only.
func (s *Store) Open() bool { return s.current.Load().open }

// AllowsAnonymous tells whether a client without credentials is let in.
func (s *Store) AllowsAnonymous() bool { return s.current.Load().anonymous != nil }

// Principal is an authenticated client: every check looks up the user's current grants,
// so a change (a deleted user, a new rule) applies to connections already open.
type Principal struct {
	s         *Store
	name      string
	anonymous bool
}

// Name is the username, or ANONYMOUS.
func (p Principal) Name() string { return p.name }

// Anonymous tells whether the client gave no credentials.
func (p Principal) Anonymous() bool { return p.anonymous }

func (p Principal) state() *principalState {
	if p.s == nil {
		return nil
	}
	snap := p.s.current.Load()
	if p.anonymous {
		return snap.anonymous
	}
	return snap.users[p.name]
}

// Anonymous returns the principal of a client without credentials, or false when
// anonymous clients are refused.
func (s *Store) Anonymous() (Principal, bool) {
	if s.current.Load().anonymous == nil {
		return Principal{}, false
	}
	return Principal{s: s, name: AnonymousName, anonymous: true}, true
}

// Lookup returns the principal of a known user without checking a password: for
// identities proven otherwise (a client certificate's CN, a finished SCRAM exchange).
func (s *Store) Lookup(name string) (Principal, bool) {
	if _, ok := s.current.Load().users[name]; !ok {
		return Principal{}, false
	}
	return Principal{s: s, name: name}, true
}

// verifiedPassword remembers the last password that passed bcrypt for a user, as an
// HMAC under a per-process random key, so a reconnecting client costs one HMAC instead
// of one bcrypt (≈50 ms of CPU). It lives in memory only and is bound to the exact
// credentials it was checked against.
type verifiedPassword struct {
	creds *User
	mac   []byte
}

// Authenticate checks a username and a password given in clear.
func (s *Store) Authenticate(name, password string) (Principal, bool) {
	st := s.current.Load().users[name]
	if st == nil {
		// Spend the same time as a wrong password, so probing for names is no faster.
		_ = dummyCreds().VerifyPassword(password)
		return Principal{}, false
	}
	m := hmac.New(sha256.New, s.cacheKey)
	m.Write([]byte(password))
	mac := m.Sum(nil)
	if v, ok := s.cache.Load(name); ok {
		vp := v.(verifiedPassword)
		if vp.creds == st.user && hmac.Equal(vp.mac, mac) {
			return Principal{s: s, name: name}, true
		}
	}
	if !st.user.Credentials.VerifyPassword(password) {
		return Principal{}, false
	}
	s.cache.Store(name, verifiedPassword{creds: st.user, mac: mac})
	return Principal{s: s, name: name}, true
}

// dummyCreds is checked against for unknown users; made on first use so that commands
// which never authenticate do not pay for a bcrypt hash.
var dummyCreds = sync.OnceValue(func() Credentials {
	c, _ := HashPassword("not a password anyone has", 0)
	return c
})

// ScramKeys returns a user's keys for a SCRAM mechanism.
func (s *Store) ScramKeys(name string, m Mechanism) (ScramKeys, bool) {
	st := s.current.Load().users[name]
	if st == nil {
		return ScramKeys{}, false
	}
	k, ok := st.user.Credentials.Scram[m]
	return k, ok && k.Valid()
}

// Superuser tells whether the principal may do everything.
func (p Principal) Superuser() bool {
	st := p.state()
	return st != nil && st.user.Superuser
}

// Valid tells whether the principal still exists (a deleted user is refused everything).
func (p Principal) Valid() bool { return p.state() != nil }

// CanPublish tells whether the principal may publish to an MQTT topic name.
func (p Principal) CanPublish(topic string) bool {
	st := p.state()
	return st != nil && (st.user.Superuser || st.acl.publish.covers(topic))
}

// CanSubscribe tells whether the principal may subscribe to an MQTT topic filter:
// some granted filter must match every topic the requested one matches.
func (p Principal) CanSubscribe(filter string) bool {
	st := p.state()
	return st != nil && (st.user.Superuser || st.acl.subscribe.covers(filter))
}

// CanStream tells whether the principal holds every operation of op on a stream.
func (p Principal) CanStream(stream string, op Op) bool {
	st := p.state()
	return st != nil && (st.user.Superuser || st.acl.stream(stream, op))
}

// CanGroup tells whether the principal holds op on a consumer group. Groups under
// $mqtt/ hold MQTT clients' replay positions: only administrators touch those.
func (p Principal) CanGroup(group string, op Op) bool {
	st := p.state()
	if st == nil {
		return false
	}
	if st.user.Superuser {
		return true
	}
	if IsReservedGroup(group) {
		return p.Admin()
	}
	return st.acl.group(group, op)
}

// IsReservedGroup tells whether a group id belongs to MQTT replay sessions.
func IsReservedGroup(group string) bool { return len(group) >= 6 && group[:6] == "$mqtt/" }

// Admin tells whether the principal administers the whole server (users, ACLs, every
// stream and group): a superuser, or a user granted admin on every stream ("*").
func (p Principal) Admin() bool {
	st := p.state()
	if st == nil {
		return false
	}
	if st.user.Superuser {
		return true
	}
	for _, pr := range st.acl.streamPrefixes {
		if pr.prefix == "" && pr.ops&OpAdmin != 0 {
			return true
		}
	}
	return false
}

// Users lists every user (config and run-time) with its effective rules, by name.
func (s *Store) Users() []User {
	snap := s.current.Load()
	out := make([]User, 0, len(snap.users))
	for _, st := range snap.users {
		u := *st.user
		u.Rules = append(append([]Rule(nil), u.Rules...), s.extraRules(u.Name)...)
		out = append(out, u)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func (s *Store) extraRules(name string) []Rule {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Rule(nil), s.extra[name]...)
}

// AddUser creates a run-time user, stored in the log.
func (s *Store) AddUser(u User) error {
	if err := validateUser(u); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if st := s.current.Load().users[u.Name]; st != nil {
		if st.user.FromConfig {
			return fmt.Errorf("add %q: %w", u.Name, ErrConfigUser)
		}
		return fmt.Errorf("add %q: %w", u.Name, ErrUserExists)
	}
	su := storedUser{Credentials: u.Credentials.String(), Superuser: u.Superuser, Rules: u.Rules}
	if err := s.persistUser(u.Name, &su); err != nil {
		return err
	}
	s.stored[u.Name] = su
	s.lg.Info().Str("user", u.Name).Bool("superuser", u.Superuser).Int("rules", len(u.Rules)).Msg("user added")
	return s.rebuild()
}

// SetPassword replaces a run-time user's credentials.
func (s *Store) SetPassword(name string, c Credentials) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.mutable(name); err != nil {
		return fmt.Errorf("set password of %q: %w", name, err)
	}
	su := s.stored[name]
	su.Credentials = c.String()
	if err := s.persistUser(name, &su); err != nil {
		return err
	}
	s.stored[name] = su
	s.cache.Delete(name)
	s.lg.Info().Str("user", name).Msg("password changed")
	return s.rebuild()
}

// DeleteUser removes a run-time user and its run-time rules.
func (s *Store) DeleteUser(name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.mutable(name); err != nil {
		return fmt.Errorf("delete %q: %w", name, err)
	}
	if err := s.persistUser(name, nil); err != nil {
		return err
	}
	if err := s.persistRules(name, nil); err != nil {
		return err
	}
	delete(s.stored, name)
	delete(s.extra, name)
	s.cache.Delete(name)
	s.lg.Info().Str("user", name).Msg("user deleted")
	return s.rebuild()
}

func (s *Store) mutable(name string) error {
	st := s.current.Load().users[name]
	switch {
	case st == nil:
		return ErrUnknownUser
	case st.user.FromConfig:
		return ErrConfigUser
	}
	return nil
}

// RunTimeRule is a rule added at run time, with the principal it is for.
type RunTimeRule struct {
	Principal string
	Rule      Rule
}

// RunTimeRules lists every rule added at run time (Kafka DescribeAcls shows these and
// the configured ones; only these can be deleted at run time).
func (s *Store) RunTimeRules() []RunTimeRule {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []RunTimeRule
	for name, rules := range s.extra {
		for _, r := range rules {
			out = append(out, RunTimeRule{Principal: name, Rule: r})
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Principal < out[j].Principal })
	return out
}

// AddRules grants rules to a principal (a user, existing or not yet created, or
// ANONYMOUS), stored in the log. Rules already present are not added twice.
func (s *Store) AddRules(principal string, rules []Rule) error {
	for _, r := range rules {
		if err := r.Validate(); err != nil {
			return err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	cur := append([]Rule(nil), s.extra[principal]...)
	for _, r := range rules {
		if !containsRule(cur, r) {
			cur = append(cur, r)
		}
	}
	if err := s.persistRules(principal, cur); err != nil {
		return err
	}
	s.extra[principal] = cur
	s.lg.Info().Str("principal", principal).Int("rules", len(rules)).Msg("acl rules added")
	return s.rebuild()
}

// RemoveRules deletes the run-time rules of every principal for which match returns
// true and returns what was removed.
func (s *Store) RemoveRules(match func(principal string, r Rule) bool) ([]RunTimeRule, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var removed []RunTimeRule
	next := map[string][]Rule{}
	for name, rules := range s.extra {
		var keep []Rule
		for _, r := range rules {
			if match(name, r) {
				removed = append(removed, RunTimeRule{Principal: name, Rule: r})
			} else {
				keep = append(keep, r)
			}
		}
		if len(keep) != len(rules) {
			if err := s.persistRules(name, keep); err != nil {
				return nil, err
			}
		}
		if len(keep) > 0 {
			next[name] = keep
		}
	}
	s.extra = next
	if len(removed) > 0 {
		s.lg.Info().Int("rules", len(removed)).Msg("acl rules removed")
	}
	return removed, s.rebuild()
}

func containsRule(rules []Rule, r Rule) bool {
	for _, x := range rules {
		if x == r {
			return true
		}
	}
	return false
}

func (s *Store) persistUser(name string, su *storedUser) error {
	if s.opts.Entries == nil {
		return nil
	}
	if su == nil {
		if err := s.opts.Entries.DeleteEntry(userKind, name); err != nil {
			return fmt.Errorf("delete user %q: %w", name, err)
		}
		return nil
	}
	v, err := json.Marshal(su)
	if err != nil {
		return err
	}
	if err := s.opts.Entries.PutEntry(userKind, name, v); err != nil {
		return fmt.Errorf("store user %q: %w", name, err)
	}
	return nil
}

func (s *Store) persistRules(name string, rules []Rule) error {
	if s.opts.Entries == nil {
		return nil
	}
	if len(rules) == 0 {
		if err := s.opts.Entries.DeleteEntry(ruleKind, name); err != nil {
			return fmt.Errorf("delete acl rules of %q: %w", name, err)
		}
		return nil
	}
	v, err := json.Marshal(rules)
	if err != nil {
		return err
	}
	if err := s.opts.Entries.PutEntry(ruleKind, name, v); err != nil {
		return fmt.Errorf("store acl rules of %q: %w", name, err)
	}
	return nil
}
