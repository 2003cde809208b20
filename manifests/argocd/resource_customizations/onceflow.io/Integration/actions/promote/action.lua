-- promote: ask the operator through the onceflow.io/action annotation (it removes it once done).
if obj.metadata.annotations == nil then
  obj.metadata.annotations = {}
end
obj.metadata.annotations["onceflow.io/action"] = "promote"
return obj
