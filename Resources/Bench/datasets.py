"""Generated DICOM data sets of the benchmark, and the prebuilt STOW-RS bodies of the curl runs.

Each data set is a folder of Part 10 files (explicit VR little endian, random pixel data so
that nothing compresses) written with pydicom, with a manifest.json that lists every file.
A folder whose manifest matches the requested specification is reused by later runs.
"""

import dataclasses
import datetime
import json
import os
import random
import shutil

import pydicom
import pydicom.uid
from pydicom.dataset import Dataset, FileMetaDataset

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
ENHANCED_CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2.1"
MANIFEST = "manifest.json"
BODY_MANIFEST = "bodies.json"
# Raised when the generated files change, so that older copies are generated again.
GENERATOR_VERSION = 2
# The multipart boundary of the prebuilt bodies: hex digits, like the plugin's random one.
BODY_BOUNDARY = "0123456789abcdef0123456789abcdef"


@dataclasses.dataclass(frozen=True)
class DataSetSpec:
    """Specification of a data set: count instances in studies of series_per_study series."""

    name: str  # folder name and key in the results
    label: str  # how the report names it
    count: int
    studies: int
    series_per_study: int
    rows: int
    columns: int
    frames: int = 1

    @property
    def sop_class_uid(self):
        return ENHANCED_CT_IMAGE_STORAGE if self.frames > 1 else CT_IMAGE_STORAGE


@dataclasses.dataclass
class DataSet:
    """A generated data set on disk."""

    spec: DataSetSpec
    directory: str
    files: list  # dicts with "Path" (relative), "Size", "StudyInstanceUID", "SOPInstanceUID"

    @property
    def count(self):
        return len(self.files)

    @property
    def total_bytes(self):
        return sum(entry["Size"] for entry in self.files)

    @property
    def mean_bytes(self):
        return self.total_bytes / self.count

    def paths(self):
        return [os.path.join(self.directory, entry["Path"]) for entry in self.files]


@dataclasses.dataclass
class DataSetSummary:
    """The figures of a data set that the report uses, as a results file stores them."""

    spec: DataSetSpec
    count: int
    total_bytes: int

    @property
    def mean_bytes(self):
        return self.total_bytes / self.count


def spec_to_json(spec):
    return dataclasses.asdict(spec)


def folder_name(spec):
    """Return the folder of a data set, named so that the quick and full sets do not collide."""
    return f"{spec.name}-{spec.count}"


def cache_key(spec):
    """Return what decides whether generated files can be reused: the spec but its label, and
    the version of the generator."""
    key = spec_to_json(spec)
    del key["label"]
    key["Generator"] = GENERATOR_VERSION
    return key


def make_series_template(spec, study_uid, series_uid, patient_index, study_index, series_number):
    """Return a CT-like data set with the attributes shared by the instances of one series."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = spec.sop_class_uid
    meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    meta.ImplementationClassUID = pydicom.uid.PYDICOM_IMPLEMENTATION_UID

    dataset = Dataset()
    dataset.file_meta = meta
    dataset.is_little_endian = True
    dataset.is_implicit_VR = False
    dataset.SpecificCharacterSet = "ISO_IR 100"
    dataset.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    dataset.SOPClassUID = spec.sop_class_uid
    dataset.StudyDate = "20240101"
    dataset.SeriesDate = "20240101"
    dataset.StudyTime = "080000"
    dataset.AccessionNumber = f"A{study_index:07d}"
    dataset.Modality = "CT"
    dataset.Manufacturer = "Benchmark"
    dataset.StudyDescription = "Benchmark CT"
    dataset.SeriesDescription = f"Axial {series_number}"
    dataset.PatientName = f"Bench^Patient{patient_index:04d}"
    dataset.PatientID = f"BENCH{patient_index:06d}"
    dataset.PatientBirthDate = "19700101"
    dataset.PatientSex = "O"
    dataset.SliceThickness = "1.0"
    dataset.KVP = "120"
    dataset.StudyInstanceUID = study_uid
    dataset.SeriesInstanceUID = series_uid
    dataset.StudyID = str(study_index)
    dataset.SeriesNumber = series_number
    dataset.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    # Derived from the study's UID, so that every series of a study shares it. A suffix to that
    # UID could make it longer than the 64 characters that DICOM allows.
    dataset.FrameOfReferenceUID = pydicom.uid.generate_uid(entropy_srcs=[study_uid])
    dataset.SamplesPerPixel = 1
    dataset.PhotometricInterpretation = "MONOCHROME2"
    if spec.frames > 1:
        dataset.NumberOfFrames = spec.frames
    dataset.Rows = spec.rows
    dataset.Columns = spec.columns
    dataset.PixelSpacing = [0.7, 0.7]
    dataset.BitsAllocated = 16
    dataset.BitsStored = 12
    dataset.HighBit = 11
    dataset.PixelRepresentation = 0
    dataset.WindowCenter = "40"
    dataset.WindowWidth = "400"
    dataset.RescaleIntercept = "-1024"
    dataset.RescaleSlope = "1"
    return dataset


def generate(spec, root, log):
    """Write the data set of spec under root (or reuse an identical one); return the DataSet."""
    directory = os.path.join(root, folder_name(spec))
    manifest_path = os.path.join(directory, MANIFEST)
    if os.path.exists(manifest_path):
        with open(manifest_path, encoding="utf-8") as text:
            manifest = json.load(text)
        if manifest.get("Key") == cache_key(spec):
            return DataSet(spec, directory, manifest["Files"])
        log(f"the data set in {directory} has another specification: generating it again")
    shutil.rmtree(directory, ignore_errors=True)
    os.makedirs(directory)

    log(f"generating {spec.count} instances of {spec.label} in {spec.studies} studies "
        f"in {directory}")
    started = datetime.datetime.now()
    generator = random.Random(spec.name)
    pixel_bytes = spec.rows * spec.columns * 2 * spec.frames
    per_study = -(-spec.count // spec.studies)
    per_series = -(-per_study // spec.series_per_study)
    files = []
    for study_index in range(1, spec.studies + 1):
        study_uid = pydicom.uid.generate_uid()
        for series_number in range(1, spec.series_per_study + 1):
            series_uid = pydicom.uid.generate_uid()
            template = make_series_template(spec, study_uid, series_uid, study_index,
                                            study_index, series_number)
            folder = f"study{study_index:03d}/series{series_number:02d}"
            os.makedirs(os.path.join(directory, folder), exist_ok=True)
            for instance_number in range(1, per_series + 1):
                if len(files) >= spec.count:
                    break
                sop_uid = pydicom.uid.generate_uid()
                template.file_meta.MediaStorageSOPInstanceUID = sop_uid
                template.SOPInstanceUID = sop_uid
                template.InstanceNumber = instance_number
                template.ImagePositionPatient = [0, 0, float(instance_number)]
                template.SliceLocation = float(instance_number)
                template.PixelData = generator.randbytes(pixel_bytes)
                relative = f"{folder}/{instance_number:05d}.dcm"
                path = os.path.join(directory, relative)
                pydicom.dcmwrite(path, template, write_like_original=False)
                files.append({"Path": relative, "Size": os.path.getsize(path),
                              "StudyInstanceUID": study_uid, "SOPInstanceUID": sop_uid})

    with open(manifest_path, "w", encoding="utf-8") as text:
        json.dump({"Key": cache_key(spec), "Files": files}, text)
    seconds = (datetime.datetime.now() - started).total_seconds()
    log(f"generated {len(files)} files in {seconds:.0f} s")
    return DataSet(spec, directory, files)


def split_batches(files, max_count, max_bytes):
    """Split files into batches the way the plugin claims them: at most max_count instances
    and max_bytes bytes each, where an instance larger than max_bytes goes alone."""
    batches = []
    batch = []
    batch_bytes = 0
    for entry in files:
        if batch and (len(batch) >= max_count or batch_bytes + entry["Size"] > max_bytes):
            batches.append(batch)
            batch = []
            batch_bytes = 0
        batch.append(entry)
        batch_bytes += entry["Size"]
    if batch:
        batches.append(batch)
    return batches


def build_bodies(dataset, root, max_count, max_bytes, log):
    """Write one multipart/related STOW-RS body per batch of the data set; return the paths.

    The bodies are reused while the data set and the batch limits are the same.
    """
    directory = os.path.join(root, folder_name(dataset.spec) + "-bodies")
    manifest_path = os.path.join(directory, BODY_MANIFEST)
    key = {"Spec": cache_key(dataset.spec), "MaxCount": max_count, "MaxBytes": max_bytes}
    if os.path.exists(manifest_path):
        with open(manifest_path, encoding="utf-8") as text:
            manifest = json.load(text)
        if manifest.get("Key") == key:
            return [os.path.join(directory, name) for name in manifest["Bodies"]]
    shutil.rmtree(directory, ignore_errors=True)
    os.makedirs(directory)

    delimiter = b"--" + BODY_BOUNDARY.encode("ascii")
    names = []
    for index, batch in enumerate(split_batches(dataset.files, max_count, max_bytes)):
        name = f"{index:05d}.bin"
        with open(os.path.join(directory, name), "wb") as body:
            for entry in batch:
                with open(os.path.join(dataset.directory, entry["Path"]), "rb") as part:
                    data = part.read()
                if delimiter in data:
                    raise RuntimeError(f"{entry['Path']} contains the multipart boundary "
                                       f"{BODY_BOUNDARY}: generate the data set again")
                body.write(delimiter + b"\r\nContent-Type: application/dicom\r\n\r\n")
                body.write(data)
                body.write(b"\r\n")
            body.write(delimiter + b"--\r\n")
        names.append(name)

    with open(manifest_path, "w", encoding="utf-8") as text:
        json.dump({"Key": key, "Bodies": names}, text)
    log(f"built {len(names)} STOW-RS bodies of {dataset.spec.label} in {directory}")
    return [os.path.join(directory, name) for name in names]


def body_content_type():
    return f'multipart/related; type="application/dicom"; boundary={BODY_BOUNDARY}'
