# taskhost_add_plugin(NAME source...)
# Builds NAME.so the way the host expects: no "lib" prefix, hidden symbols
# except the entry point, linked against the SDK.
function(taskhost_add_plugin name)
  add_library(${name} MODULE ${ARGN})
  target_link_libraries(${name} PRIVATE taskhost::sdk)
  set_target_properties(${name} PROPERTIES
    PREFIX ""
    CXX_VISIBILITY_PRESET hidden
    VISIBILITY_INLINES_HIDDEN ON)
endfunction()
