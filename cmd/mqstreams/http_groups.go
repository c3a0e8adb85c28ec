package main

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/rs/zerolog"

	"github.com/mqstreams/mqstreams/auth"
	"github.com/mqstreams/mqstreams/kafkawire"
)

// groupsAdmin is what the groups API asks of the Kafka broker's group coordinator.
type groupsAdmin interface {
	DescribeGroup(id string) (kafkawire.GroupDescription, error)
	DeleteGroup(id string) error
	ResetGroupOffsets(id string, r kafkawire.OffsetReset) ([]kafkawire.GroupLag, error)
}

// groupsAPI serves one consumer group: describe (read on the group), delete and
// offset resets (admin on the group; $mqtt/ groups hold MQTT replay positions and are
// for administrators only, as auth.Principal.CanGroup decides).
type groupsAPI struct {
	groups groupsAdmin
	lg     zerolog.Logger
}

func (a groupsAPI) register(h *httpServer, guard *apiAuth) {
	h.Handle("GET /api/v1/groups/{group}", guard.require(authenticated, http.HandlerFunc(a.describe)))
	h.Handle("DELETE /api/v1/groups/{group}", guard.require(authenticated, http.HandlerFunc(a.delete)))
	h.Handle("POST /api/v1/groups/{group}/reset-offsets", guard.require(authenticated, http.HandlerFunc(a.reset)))
}

func (a groupsAPI) describe(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("group")
	if !principalOf(r).CanGroup(id, auth.OpRead) {
		apiError(w, http.StatusNotFound, "NOT_FOUND", fmt.Sprintf("group %q not found", id))
		return
	}
	d, err := a.groups.DescribeGroup(id)
	if err != nil {
		groupAPIError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, d)
}

func (a groupsAPI) mayAdmin(w http.ResponseWriter, r *http.Request, id string) bool {
	if !principalOf(r).CanGroup(id, auth.OpAdmin) {
		apiError(w, http.StatusForbidden, "FORBIDDEN", fmt.Sprintf("changing group %q needs admin on it", id))
		return false
	}
	return true
}

func (a groupsAPI) delete(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("group")
	if !a.mayAdmin(w, r, id) {
		return
	}
	if err := a.groups.DeleteGroup(id); err != nil {
		groupAPIError(w, err)
		return
	}
	a.lg.Info().Str("group", id).Str("user", principalOf(r).Name()).Msg("group deleted over HTTP")
	w.WriteHeader(http.StatusNoContent)
}

// resetRequest is the body of POST /api/v1/groups/{group}/reset-offsets.
type resetRequest struct {
	Topic    string `json:"topic"`
	To       string `json:"to"`
	Datetime string `json:"datetime"` // RFC 3339, with to: datetime
	DryRun   bool   `json:"dry_run"`
}

func (a groupsAPI) reset(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("group")
	if !a.mayAdmin(w, r, id) {
		return
	}
	var req resetRequest
	if err := decodeJSON(w, r, &req); err != nil {
		apiError(w, http.StatusBadRequest, "BAD_REQUEST", err.Error())
		return
	}
	rs := kafkawire.OffsetReset{Topic: req.Topic, To: req.To, DryRun: req.DryRun}
	if req.To == "datetime" {
		t, err := time.Parse(time.RFC3339Nano, req.Datetime)
		if err != nil {
			apiError(w, http.StatusBadRequest, "BAD_REQUEST", fmt.Sprintf("datetime: want RFC 3339 such as 2026-01-02T15:04:05Z, not %q", req.Datetime))
			return
		}
		rs.Time = t
	} else if req.Datetime != "" {
		apiError(w, http.StatusBadRequest, "BAD_REQUEST", `datetime: only with "to": "datetime"`)
		return
	}
	out, err := a.groups.ResetGroupOffsets(id, rs)
	if err != nil {
		groupAPIError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"group": id, "dry_run": req.DryRun, "offsets": out})
}

func groupAPIError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, kafkawire.ErrGroupNotFound):
		apiError(w, http.StatusNotFound, "NOT_FOUND", err.Error())
	case errors.Is(err, kafkawire.ErrGroupNotEmpty):
		apiError(w, http.StatusConflict, "GROUP_NOT_EMPTY", err.Error())
	case errors.Is(err, kafkawire.ErrBadReset):
		apiError(w, http.StatusBadRequest, "BAD_REQUEST", err.Error())
	default:
		apiError(w, http.StatusInternalServerError, "INTERNAL_ERROR", err.Error())
	}
}
