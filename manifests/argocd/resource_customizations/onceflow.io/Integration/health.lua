-- Argo CD health of an onceflow.io Integration, read from the status the operator writes.
hs = {}
local function condition(status, kind)
  if status == nil or status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == kind then
      return c
    end
  end
  return nil
end

local status = obj.status
if status == nil or status.observedGeneration == nil or status.observedGeneration < obj.metadata.generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. tostring(obj.metadata.generation)
  return hs
end
local ready = condition(status, "Ready")
local stalled = condition(status, "Stalled")
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = stalled.reason .. ": " .. stalled.message
  return hs
end
if status.phase == "Degraded" then
  hs.status = "Degraded"
  hs.message = status.message or "Degraded"
  return hs
end
if status.phase == "Paused" then
  hs.status = "Suspended"
  hs.message = status.message or "Rollout paused"
  return hs
end
if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = ready.message
  return hs
end
hs.status = "Progressing"
hs.message = status.message or "Waiting for the rollout"
return hs
