package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/mqstreams/mqstreams/auth"
	"github.com/mqstreams/mqstreams/certs"
)

// tokenLifetime is how long a bearer token from POST /api/v5/login stays valid.
const tokenLifetime = time.Hour

// maxAPIBody bounds a JSON request body of the admin API.
const maxAPIBody = 1 << 20

// apiAuth authenticates HTTP API requests (basic auth, a bearer token from
// /api/v5/login as EMQX issues, or a verified client certificate's CN) and authorizes
// them: any authenticated user may GET, only administrators change anything.
type apiAuth struct {
	store   *auth.Store
	limiter *auth.Limiter
	lg      zerolog.Logger

	mu     sync.Mutex
	tokens map[string]apiToken
	now    func() time.Time
}

type apiToken struct {
	user    string
	expires time.Time
}

func newAPIAuth(store *auth.Store, lg zerolog.Logger) *apiAuth {
	return &apiAuth{store: store, limiter: auth.NewLimiter(10, time.Minute), lg: lg, tokens: map[string]apiToken{}, now: time.Now}
}

type principalKey struct{}

// principalOf returns the principal apiAuth put in the request context.
func principalOf(r *http.Request) auth.Principal {
	p, _ := r.Context().Value(principalKey{}).(auth.Principal)
	return p
}

// apiError writes EMQX's error shape.
func apiError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"code": code, "message": msg})
}

// authenticate finds who sends the request; ok is false when credentials were given
// and are wrong, or none were given and anonymous access is refused.
func (a *apiAuth) authenticate(r *http.Request) (auth.Principal, bool) {
	if user, pw, ok := r.BasicAuth(); ok {
		if !a.limiter.Allow(r.RemoteAddr) {
			a.lg.Warn().Str("remote", r.RemoteAddr).Msg("http login refused: too many failed attempts")
			return auth.Principal{}, false
		}
		p, ok := a.store.Authenticate(user, pw)
		if !ok {
			a.limiter.Fail(r.RemoteAddr)
			a.lg.Warn().Str("remote", r.RemoteAddr).Str("user", user).Msg("http login failed")
		}
		return p, ok
	}
	if tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		a.mu.Lock()
		t, found := a.tokens[tok]
		if found && a.now().After(t.expires) {
			delete(a.tokens, tok)
			found = false
		}
		a.mu.Unlock()
		if !found {
			return auth.Principal{}, false
		}
		return a.store.Lookup(t.user)
	}
	if r.TLS != nil {
		if cn, ok := certs.PeerName(*r.TLS); ok {
			return a.store.Lookup(cn)
		}
	}
	return a.store.Anonymous()
}

// access is what a route asks of the principal.
type access int

const (
	// readAny lets any authenticated principal GET; other methods need an administrator.
	readAny access = iota
	// adminOnly needs an administrator for every method.
	adminOnly
	// authenticated lets any authenticated principal in; the handler decides the rest.
	authenticated
)

// require wraps an API handler with authentication and the route's access rule.
func (a *apiAuth) require(need access, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, ok := a.authenticate(r)
		if !ok {
			w.Header().Set("WWW-Authenticate", `Basic realm="mqstreams"`)
			apiError(w, http.StatusUnauthorized, "BAD_USERNAME_OR_PWD", errNoCredentials.Error())
			return
		}
		readOnly := r.Method == http.MethodGet || r.Method == http.MethodHead
		if (need == adminOnly || need == readAny && !readOnly) && !p.Admin() {
			apiError(w, http.StatusForbidden, "FORBIDDEN", "this needs an administrator (superuser, or admin on every stream)")
			return
		}
		h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), principalKey{}, p)))
	})
}

// metrics guards /metrics when http.metrics_auth is set (any authenticated user).
func (a *apiAuth) metrics(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, ok := a.authenticate(r); !ok {
			w.Header().Set("WWW-Authenticate", `Basic realm="mqstreams"`)
			http.Error(w, "authentication required", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// login serves POST /api/v5/login: {"username","password"} → {"token","expires_in"}.
func (a *apiAuth) login(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Username string `json:"username"`
		Password string `json:"password"`
	}
	if err := decodeJSON(w, r, &req); err != nil {
		apiError(w, http.StatusBadRequest, "BAD_REQUEST", err.Error())
		return
	}
	if !a.limiter.Allow(r.RemoteAddr) {
		apiError(w, http.StatusUnauthorized, "BAD_USERNAME_OR_PWD", "too many failed logins; wait a minute")
		return
	}
	if _, ok := a.store.Authenticate(req.Username, req.Password); !ok {
		a.limiter.Fail(r.RemoteAddr)
		a.lg.Warn().Str("remote", r.RemoteAddr).Str("user", req.Username).Msg("http login failed")
		apiError(w, http.StatusUnauthorized, "BAD_USERNAME_OR_PWD", "wrong username or password")
		return
	}
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		apiError(w, http.StatusInternalServerError, "INTERNAL_ERROR", err.Error())
		return
	}
	tok := base64.RawURLEncoding.EncodeToString(b)
	now := a.now()
	a.mu.Lock()
	for k, t := range a.tokens { // expired tokens go when new ones are made
		if now.After(t.expires) {
			delete(a.tokens, k)
		}
	}
	a.tokens[tok] = apiToken{user: req.Username, expires: now.Add(tokenLifetime)}
	a.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"token": tok, "expires_in": int(tokenLifetime.Seconds())})
}

// decodeJSON reads a bounded body strictly: unknown fields and trailing data are errors.
func decodeJSON(w http.ResponseWriter, r *http.Request, dst any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxAPIBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return errors.New("request body over 1 MiB")
		}
		return errors.New("invalid JSON body: " + err.Error())
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("invalid JSON body: data after the object")
	}
	return nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
