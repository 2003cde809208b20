-- Rollout verbs offered on an Integration. Each sets the onceflow.io/action annotation, which
-- the operator consumes; the spec is never touched, so self-heal does not undo a verb.
actions = {}
local status = obj.status or {}
local rollout = status.rollout or {}
local canary = rollout.canaryRevision ~= nil and rollout.canaryRevision ~= ""
local aborted = rollout.abortedRevision ~= nil and rollout.abortedRevision ~= ""
local paused = rollout.pausedByUser == true
local waiting = rollout.pauseConditions ~= nil and #rollout.pauseConditions > 0
actions["promote"] = {["disabled"] = not (canary and waiting)}
actions["promote-full"] = {["disabled"] = not canary}
actions["abort"] = {["disabled"] = not canary}
actions["retry"] = {["disabled"] = not aborted}
actions["pause"] = {["disabled"] = not canary or paused}
actions["resume"] = {["disabled"] = not paused}
return actions
