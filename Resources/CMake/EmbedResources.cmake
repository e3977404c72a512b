# Writes a C++ source that defines AzureDicom::GetEmbeddedResource(), which returns the content of
# each file under ROOT by its path relative to ROOT ("ui/index.html").
function(EmbedResources OUTPUT ROOT)
  set(FILES ${ARGN})
  # A semicolon would split the argument of the command into several, so the list travels with
  # "|" instead (VERBATIM keeps the shell from reading it as a pipe).
  string(REPLACE ";" "|" FILE_LIST "${FILES}")
  add_custom_command(
    OUTPUT ${OUTPUT}
    COMMAND ${CMAKE_COMMAND} -DOUTPUT=${OUTPUT} -DROOT=${ROOT} "-DFILES=${FILE_LIST}"
            -P ${CMAKE_SOURCE_DIR}/Resources/CMake/WriteEmbeddedResources.cmake
    DEPENDS ${FILES} ${CMAKE_SOURCE_DIR}/Resources/CMake/WriteEmbeddedResources.cmake
    COMMENT "Embedding ${ROOT}"
    VERBATIM)
endfunction()
