-- Argo CD health of an onceflow.io Connector: Secrets present, gateway up, endpoint reachable,
-- credentials accepted.
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
local reachable = condition(status, "Reachable")
if reachable ~= nil and reachable.status == "False" then
  hs.status = "Degraded"
  hs.message = "Unreachable: " .. reachable.message
  return hs
end
local authenticated = condition(status, "Authenticated")
if authenticated ~= nil and authenticated.status == "False" then
  hs.status = "Degraded"
  hs.message = authenticated.reason .. ": " .. authenticated.message
  return hs
end
local ready = condition(status, "Ready")
if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = ready.message
  return hs
end
hs.status = "Progressing"
if ready ~= nil then
  hs.message = ready.message
else
  hs.message = "Waiting for the operator"
end
return hs
