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

# taskhost_plugin_schema(NAME schema.yaml [DIR dir] [OUTPUT file] [MIGRATIONS file.sql...])
# The build pins the schema to what it built: NAME.so goes to DIR (default:
# this build folder) with copies of its data migrations, and the schema is
# written to OUTPUT (default: DIR/<its file name>) with "@SHA256@" replaced by
# the .so's digest, each "@SHA256:file.sql@" by that migration's, and
# "@BUILD@" (in the version's build metadata, e.g. 0.1.0+@BUILD@) by the
# first 12 hex digits of the stamped text's digest: every build that changes
# a byte of the plugin or its migrations is a schema version of its own.
function(taskhost_plugin_schema name schema)
  cmake_parse_arguments(PARSE_ARGV 2 arg "" "DIR;OUTPUT" "MIGRATIONS")
  if(NOT arg_DIR)
    set(arg_DIR ${CMAKE_CURRENT_BINARY_DIR})
  endif()
  get_filename_component(schema ${schema} ABSOLUTE)
  get_filename_component(file_name ${schema} NAME)
  if(NOT arg_OUTPUT)
    set(arg_OUTPUT ${arg_DIR}/${file_name})
  endif()
  set_target_properties(${name} PROPERTIES LIBRARY_OUTPUT_DIRECTORY ${arg_DIR})
  set(stamp ${CMAKE_CURRENT_FUNCTION_LIST_DIR}/taskhost_stamp_schema.cmake)
  set(copies "")
  foreach(sql IN LISTS arg_MIGRATIONS)
    get_filename_component(sql ${sql} ABSOLUTE)
    get_filename_component(sql_name ${sql} NAME)
    add_custom_command(OUTPUT ${arg_DIR}/${sql_name}
                       COMMAND ${CMAKE_COMMAND} -E copy ${sql} ${arg_DIR}/${sql_name}
                       DEPENDS ${sql} COMMENT "Copying data migration ${sql_name}")
    list(APPEND copies ${arg_DIR}/${sql_name})
  endforeach()
  add_custom_command(
    OUTPUT ${arg_OUTPUT}
    COMMAND ${CMAKE_COMMAND} -DPLUGIN=$<TARGET_FILE:${name}> -DIN=${schema} -DOUT=${arg_OUTPUT}
            -P ${stamp}
    DEPENDS ${name} ${copies} ${schema} ${stamp}
    COMMENT "Pinning ${file_name} to the ${name} this build made")
  add_custom_target(${name}_schema ALL DEPENDS ${arg_OUTPUT})
endfunction()
