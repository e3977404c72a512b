#include "Orthanc/ExplorerResources.h"

#include "Orthanc/OrthancApi.h"

#include <cstring>

namespace AzureDicom
{
namespace
{
const char* const UI_FOLDER = "ui/";
const char* const INDEX_FILE = "index.html";
const char* const EXPLORER_SCRIPT = "explorer/azure-dicom.js";

// Orthanc 1.10's explorer opens a plugin's root URI with window.open(), relative to
// /app/explorer.html, so a relative path also works behind a reverse-proxy prefix.
const char* const ROOT_URI = "../azure-dicom/ui/index.html";

OrthancPluginContext* orthancContext = nullptr;


struct ContentType
{
  const char* extension;
  const char* type;
};

const ContentType CONTENT_TYPES[] = {
    {".html", "text/html; charset=utf-8"},
    {".js", "text/javascript; charset=utf-8"},
    {".css", "text/css; charset=utf-8"},
    {".svg", "image/svg+xml"},
    {".png", "image/png"},
    {".json", "application/json"},
    {".txt", "text/plain; charset=utf-8"},
};


bool EndsWith(const std::string& text, const char* suffix)
{
  const size_t length = std::strlen(suffix);
  return text.size() >= length && text.compare(text.size() - length, length, suffix) == 0;
}


// Serves GET /azure-dicom/ui, /azure-dicom/ui/ and /azure-dicom/ui/{file} from the embedded
// files under Resources/Embedded/ui.
OrthancPluginErrorCode ServeDashboardFile(OrthancPluginRestOutput* output, const char* /* url */,
                                          const OrthancPluginHttpRequest* request)
{
  if (request->method != OrthancPluginHttpMethod_Get)
  {
    OrthancPluginSendMethodNotAllowed(orthancContext, output, "GET");
    return OrthancPluginErrorCode_Success;
  }

  const std::string file = request->groupsCount > 0 ? request->groups[0] : INDEX_FILE;
  std::string content;
  if (!GetEmbeddedResource(content, UI_FOLDER + file))
  {
    AnswerError(orthancContext, output, 404,
                "the dashboard has no file \"" + file + "\"; open /azure-dicom/ui/");
    return OrthancPluginErrorCode_Success;
  }

  // The files change with the plugin's version, so the browser checks again on every load.
  OrthancPluginSetHttpHeader(orthancContext, output, "Cache-Control", "no-cache");
  OrthancPluginAnswerBuffer(orthancContext, output, content.data(), content.size(),
                            GetContentType(file));
  return OrthancPluginErrorCode_Success;
}
}  // namespace


const char* GetContentType(const std::string& name)
{
  for (const ContentType& entry : CONTENT_TYPES)
  {
    if (EndsWith(name, entry.extension))
    {
      return entry.type;
    }
  }
  return "application/octet-stream";
}


void RegisterExplorerResources(OrthancPluginContext* orthanc)
{
  orthancContext = orthanc;

  // Both forms serve index.html. The page itself moves a browser from /azure-dicom/ui to
  // /azure-dicom/ui/, because its relative URLs ("app.js", "../status") need the final slash.
  for (const char* pattern : {"/azure-dicom/ui", "/azure-dicom/ui/", "/azure-dicom/ui/([^/]+)"})
  {
    OrthancPluginRegisterRestCallbackNoLock(orthanc, pattern, ServeDashboardFile);
  }

  std::string script;
  if (GetEmbeddedResource(script, EXPLORER_SCRIPT))
  {
    OrthancPluginExtendOrthancExplorer(orthanc, script.c_str());
  }
  else
  {
    OrthancPluginLogError(orthanc, "AzureDicom: the Orthanc Explorer script is missing from the "
                                   "plugin's embedded files; rebuild the plugin");
  }

  OrthancPluginSetRootUri(orthanc, ROOT_URI);
}
}  // namespace AzureDicom
