-- Argo CD health of an onceflow.io SyncPolicy. Drift is reported, not treated as unhealthy:
-- records that differ between systems are work for people, not a broken deployment.
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
local stalled = condition(status, "Stalled")
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = stalled.reason .. ": " .. stalled.message
  return hs
end
local ready = condition(status, "Ready")
if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = ready.message
  if status.drift ~= nil and status.drift.total ~= nil and status.drift.total > 0 then
    hs.message = hs.message .. "; drift: " .. tostring(status.drift.total) .. " record(s) differ"
  end
  return hs
end
hs.status = "Progressing"
hs.message = "Waiting for the operator"
return hs
