#pragma once

#include "Orthanc/PluginContext.h"
#include "Sync/InstanceResolver.h"

#include <deque>
#include <future>
#include <string>
#include <vector>

#include <json/json.h>

namespace AzureDicom
{
enum class ResourceLevel
{
  Patient,
  Study,
  Series,
  Instance
};


struct ResourceReference
{
  ResourceLevel level;
  std::string orthancId;
};


// Finds the patient, study, series or instance with this Orthanc ID, or else with this DICOM
// UID; returns false when there is none.
bool LookUpResource(ResourceReference& resource, OrthancGateway& orthanc, const std::string& id);


// A back-fill as an Orthanc job: queues existing resources, or the whole archive, a few hundred
// instances per step, so that its memory stays bounded however large the archive.
class SyncJob
{
public:
  // An empty list of resources means the whole archive.
  SyncJob(PluginContext& context, const std::vector<ResourceReference>& resources);

  // Submits the job to Orthanc's job engine; returns its ID. Ownership passes to Orthanc.
  static std::string Submit(std::unique_ptr<SyncJob> job, int priority);

private:
  OrthancPluginJobStepStatus Step();
  float GetProgress() const;
  const char* GetContent();
  void Reset();
  void QueueInstances(const std::vector<std::string>& orthancIds);
  void QueueResolved(const std::vector<NewInstance>& instances, size_t processed);
  void ExpandNextResource();
  bool StepWholeArchive();

  // A page of the whole archive, listed and resolved.
  struct ArchivePage
  {
    size_t listed = 0;
    std::vector<NewInstance> instances;
    uint64_t missing = 0;
  };

  ArchivePage ReadArchivePage(uint64_t since);
  Json::Value ListArchivePage(const std::string& uri);
  static std::string GetArchivePageUri(uint64_t since, bool expand);

  static uint64_t CountInstances(OrthancGateway& orthanc, const ResourceReference& resource);

  static constexpr unsigned int INSTANCES_PER_STEP = 500;

  PluginContext& context_;
  InstanceResolver resolver_;
  std::vector<ResourceReference> resources_;
  bool wholeArchive_;

  std::deque<ResourceReference> toExpand_;
  std::deque<std::string> toQueue_;  // Orthanc IDs of instances
  uint64_t archiveCursor_ = 0;  // the "since" of /instances for the whole archive
  std::future<ArchivePage> nextPage_;  // the next page, read during a step
  uint64_t total_ = 0;
  uint64_t processed_ = 0;
  QueueResult queued_;
  uint64_t missing_ = 0;  // deleted from Orthanc since the job started
  std::string content_;
};
}  // namespace AzureDicom
