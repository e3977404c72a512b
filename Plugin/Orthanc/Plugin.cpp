// The entry points that Orthanc calls: it loads the plugin, reads its configuration, registers
// the callbacks and REST routes, and starts the threads once Orthanc has started.

#include "Common/Exception.h"
#include "Orthanc/ExplorerResources.h"
#include "Orthanc/OrthancApi.h"
#include "Orthanc/PluginContext.h"
#include "Orthanc/RestRoutes.h"
#include "Orthanc/RollbackJob.h"
#include "Sync/Configuration.h"
#include "Sync/Database.h"

#include <orthanc/OrthancCPlugin.h>

#include <sys/stat.h>
#include <unistd.h>

#include <climits>
#include <cstring>
#include <memory>

namespace
{
const char* const PLUGIN_NAME = "azure-dicom";
const char* const DATABASE_FILE = "azure-dicom-outbox.db";

// The plugin's one piece of global state: Orthanc's C API calls plain functions.
std::unique_ptr<AzureDicom::PluginContext> pluginContext;


AzureDicom::PluginContext* GetPluginContext()
{
  return pluginContext.get();
}


// Returns Orthanc's StorageDirectory as an absolute path.
std::string GetStorageDirectory(OrthancPluginContext* orthanc,
                                const Json::Value& orthancConfiguration)
{
  const Json::Value& storage = orthancConfiguration["StorageDirectory"];
  std::string directory = storage.isString() ? storage.asString() : "OrthancStorage";
  if (directory.empty() || directory[0] != '/')
  {
    // Orthanc resolves relative paths of its configuration against the configuration's folder.
    directory = AzureDicom::GetConfigurationDirectory(orthanc) + "/" + directory;
  }
  return directory;
}


// Resolves the outbox's database: a PostgreSQL connection string as it is, the SQLite path of
// "Database", or a file in Orthanc's storage directory.
std::string GetDatabasePath(OrthancPluginContext* orthanc, const Json::Value& orthancConfiguration,
                            const AzureDicom::Configuration& configuration)
{
  std::string path = configuration.database;
  if (AzureDicom::IsPostgreSqlConnectionString(path))
  {
    return path;
  }

  if (path.empty())
  {
    path = GetStorageDirectory(orthanc, orthancConfiguration) + "/" + DATABASE_FILE;
  }

  // Orthanc resolves relative paths of its configuration against the configuration's folder.
  if (path[0] != '/')
  {
    path = AzureDicom::GetConfigurationDirectory(orthanc) + "/" + path;
  }

  const std::string directory = path.substr(0, path.find_last_of('/'));
  if (!directory.empty())
  {
    mkdir(directory.c_str(), 0700);  // Orthanc may not have made its storage folder yet
  }
  return path;
}


// Returns NodeName, or <hostname>:<HttpPort> (Orthanc's default HttpPort is 8042).
std::string GetNodeName(const Json::Value& orthancConfiguration,
                        const AzureDicom::Configuration& configuration)
{
  if (!configuration.nodeName.empty())
  {
    return configuration.nodeName;
  }

  char hostName[HOST_NAME_MAX + 1] = {};
  if (gethostname(hostName, sizeof(hostName) - 1) != 0 || hostName[0] == '\0')
  {
    std::strcpy(hostName, "localhost");
  }

  const Json::Value& port = orthancConfiguration["HttpPort"];
  const std::string portText = port.isIntegral() ? std::to_string(port.asInt64())
                                                 : (port.isString() ? port.asString() : "8042");
  return std::string(hostName) + ":" + portText;
}


OrthancPluginErrorCode OnStoredInstance(const OrthancPluginDicomInstance* instance,
                                        const char* instanceId)
{
  // Runs inside Orthanc's store, so it does no I/O: the follower reads the change log.
  if (pluginContext)
  {
    if (instanceId != nullptr)
    {
      OrthancPluginContext* orthanc = pluginContext->GetOrthanc();
      const int64_t size = instance ? OrthancPluginGetInstanceSize(orthanc, instance) : 0;
      const void* file = instance ? OrthancPluginGetInstanceData(orthanc, instance) : nullptr;
      try
      {
        pluginContext->NoteStoredInstance(instanceId, static_cast<const char*>(file),
                                          size > 0 ? static_cast<size_t>(size) : 0);
      }
      catch (const std::exception& e)
      {
        // The follower then looks the instance up in Orthanc.
        pluginContext->GetLogger().Warning(std::string("cannot note a stored instance: ") +
                                           e.what());
      }
    }
    pluginContext->GetDispatcher().NoteIngestion();
    pluginContext->GetFollower().Wake();
  }
  return OrthancPluginErrorCode_Success;
}


OrthancPluginErrorCode OnChange(OrthancPluginChangeType changeType,
                                OrthancPluginResourceType resourceType, const char* resourceId)
{
  if (!pluginContext)
  {
    return OrthancPluginErrorCode_Success;
  }

  try
  {
    if (changeType == OrthancPluginChangeType_OrthancStarted)
    {
      pluginContext->Start();
    }
    else if (changeType == OrthancPluginChangeType_OrthancStopped)
    {
      pluginContext->Stop();
    }
    else if (changeType == OrthancPluginChangeType_Deleted &&
             resourceType == OrthancPluginResourceType_Instance && resourceId != nullptr)
    {
      // Orthanc reports the deletion of every instance, also when a whole study is deleted. The
      // outbox is updated here, without any REST call, and the deletion worker does the rest.
      pluginContext->HandleDeletedInstance(resourceId);
    }
  }
  catch (const std::exception& e)
  {
    pluginContext->GetLogger().Error(std::string("cannot handle a change of Orthanc: ") + e.what());
  }
  return OrthancPluginErrorCode_Success;
}
}  // namespace


extern "C"
{
ORTHANC_PLUGINS_API int32_t OrthancPluginInitialize(OrthancPluginContext* orthanc)
{
  if (OrthancPluginCheckVersion(orthanc) == 0)
  {
    OrthancPluginLogError(orthanc, "AzureDicom: this Orthanc is older than the plugin's SDK "
                                   "(1.10.1): upgrade Orthanc");
    return -1;
  }

  OrthancPluginSetDescription(orthanc, "Mirrors every stored instance to the Azure Health Data "
                                       "Services DICOM service with STOW-RS.");

  try
  {
    const Json::Value configuration = AzureDicom::ReadOrthancConfiguration(orthanc);
    const AzureDicom::Configuration settings =
        AzureDicom::ParseConfiguration(configuration["AzureDicom"]);
    if (!settings.enable)
    {
      OrthancPluginLogWarning(orthanc, "AzureDicom: disabled (AzureDicom.Enable is false or the "
                                       "AzureDicom section is missing)");
      return 0;
    }

    const std::string tlsWarning = AzureDicom::GetUnverifiedTlsWarning(settings);
    if (!tlsWarning.empty())
    {
      OrthancPluginLogWarning(orthanc, ("AzureDicom: " + tlsWarning).c_str());
    }

    const std::string databasePath = GetDatabasePath(orthanc, configuration, settings);
    const std::string nodeName = GetNodeName(configuration, settings);
    pluginContext = std::make_unique<AzureDicom::PluginContext>(
        orthanc, configuration["AzureDicom"], databasePath, nodeName);
    pluginContext->SetStorageDirectory(GetStorageDirectory(orthanc, configuration));
    pluginContext->GetLogger().Warning(
        "mirroring to " + pluginContext->GetConfiguration().GetStowUrl() + " (outbox " +
        AzureDicom::RedactDatabase(databasePath) + ", node " + nodeName + ")");
  }
  catch (const std::exception& e)
  {
    OrthancPluginLogError(orthanc, (std::string("AzureDicom: ") + e.what()).c_str());
    return -1;
  }

  AzureDicom::RegisterRestRoutes(orthanc, GetPluginContext);
  AzureDicom::RegisterExplorerResources(orthanc);
  AzureDicom::RollbackJob::RegisterUnserializer(orthanc, GetPluginContext);
  OrthancPluginRegisterOnStoredInstanceCallback(orthanc, OnStoredInstance);
  OrthancPluginRegisterOnChangeCallback(orthanc, OnChange);
  return 0;
}


ORTHANC_PLUGINS_API void OrthancPluginFinalize()
{
  if (pluginContext)
  {
    pluginContext->Stop();
    pluginContext.reset();
  }
}


ORTHANC_PLUGINS_API const char* OrthancPluginGetName()
{
  return PLUGIN_NAME;
}


ORTHANC_PLUGINS_API const char* OrthancPluginGetVersion()
{
  return AZURE_DICOM_VERSION;
}
}
