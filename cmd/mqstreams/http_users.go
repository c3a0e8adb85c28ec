package main

import (
	"errors"
	"net/http"

	"github.com/mqstreams/mqstreams/auth"
)

// userJSON is a user in the HTTP API and the CLI's -o json. Passwords go in (in clear
// over TLS, or already hashed), never out.
type userJSON struct {
	Username     string          `json:"username"`
	Password     string          `json:"password,omitempty"`
	PasswordHash string          `json:"password_hash,omitempty"`
	Superuser    bool            `json:"superuser"`
	Source       string          `json:"source,omitempty"`
	ACL          []auth.RuleSpec `json:"acl"`
}

func toUserJSON(u auth.User) userJSON {
	j := userJSON{Username: u.Name, Superuser: u.Superuser, Source: "api", ACL: []auth.RuleSpec{}}
	if u.FromConfig {
		j.Source = "config"
	}
	for _, r := range u.Rules {
		j.ACL = append(j.ACL, r.Spec())
	}
	return j
}

// credentials turns the password or password_hash of a request into credentials.
func (j userJSON) credentials() (auth.Credentials, error) {
	switch {
	case j.Password != "" && j.PasswordHash != "":
		return auth.Credentials{}, errors.New("give password or password_hash, not both")
	case j.Password != "":
		return auth.HashPassword(j.Password, 0)
	case j.PasswordHash != "":
		return auth.ParseCredentials(j.PasswordHash)
	}
	return auth.Credentials{}, errors.New("password or password_hash is required")
}

// usersAPI serves /api/v1/users: list, add, delete, change password.
type usersAPI struct{ store *auth.Store }

func (a usersAPI) register(h *httpServer, guard *apiAuth) {
	h.Handle("GET /api/v1/users", guard.require(adminOnly, http.HandlerFunc(a.list)))
	h.Handle("POST /api/v1/users", guard.require(adminOnly, http.HandlerFunc(a.add)))
	h.Handle("DELETE /api/v1/users/{name}", guard.require(adminOnly, http.HandlerFunc(a.delete)))
	// A user may change its own password; an administrator any run-time user's.
	h.Handle("PUT /api/v1/users/{name}/password", guard.require(authenticated, http.HandlerFunc(a.passwd)))
}

func (a usersAPI) list(w http.ResponseWriter, _ *http.Request) {
	out := []userJSON{}
	for _, u := range a.store.Users() {
		out = append(out, toUserJSON(u))
	}
	writeJSON(w, http.StatusOK, map[string]any{"data": out})
}

func (a usersAPI) add(w http.ResponseWriter, r *http.Request) {
	var req userJSON
	if err := decodeJSON(w, r, &req); err != nil {
		apiError(w, http.StatusBadRequest, "BAD_REQUEST", err.Error())
		return
	}
	c, err := req.credentials()
	if err != nil {
		apiError(w, http.StatusBadRequest, "BAD_REQUEST", err.Error())
		return
	}
	u := auth.User{Name: req.Username, Credentials: c, Superuser: req.Superuser}
	for _, s := range req.ACL {
		rule, err := s.Rule()
		if err != nil {
			apiError(w, http.StatusBadRequest, "BAD_REQUEST", "acl: "+err.Error())
			return
		}
		u.Rules = append(u.Rules, rule)
	}
	if err := a.store.AddUser(u); err != nil {
		storeError(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, toUserJSON(u))
}

func (a usersAPI) delete(w http.ResponseWriter, r *http.Request) {
	if err := a.store.DeleteUser(r.PathValue("name")); err != nil {
		storeError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a usersAPI) passwd(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if p := principalOf(r); !p.Admin() && (p.Anonymous() || p.Name() != name) {
		apiError(w, http.StatusForbidden, "FORBIDDEN", "only an administrator changes another user's password")
		return
	}
	var req userJSON
	if err := decodeJSON(w, r, &req); err != nil {
		apiError(w, http.StatusBadRequest, "BAD_REQUEST", err.Error())
		return
	}
	c, err := req.credentials()
	if err != nil {
		apiError(w, http.StatusBadRequest, "BAD_REQUEST", err.Error())
		return
	}
	if err := a.store.SetPassword(name, c); err != nil {
		storeError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func storeError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, auth.ErrUnknownUser):
		apiError(w, http.StatusNotFound, "NOT_FOUND", err.Error())
	case errors.Is(err, auth.ErrUserExists), errors.Is(err, auth.ErrConfigUser):
		apiError(w, http.StatusConflict, "ALREADY_EXISTS", err.Error())
	case errors.Is(err, auth.ErrInvalidUser):
		apiError(w, http.StatusBadRequest, "BAD_REQUEST", err.Error())
	default:
		apiError(w, http.StatusInternalServerError, "INTERNAL_ERROR", err.Error())
	}
}
