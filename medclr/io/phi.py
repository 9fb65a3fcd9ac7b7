"""Which DICOM attributes may identify a patient, and a display-safe view of a DICOM header.

:data:`PHI_KEYWORDS` is the set of attributes that the *Basic Application Level Confidentiality Profile* of
DICOM PS3.15 Annex E (Table E.1-1, "Application Level Confidentiality Profile Attributes", 2026c edition) tells
a de-identifier to remove, empty or replace (actions X, Z, D, U and their combinations), written as pydicom
keywords. It includes the obvious ones (PatientName, PatientID, PatientBirthDate, PatientSex, PatientAge,
OtherPatientIDs, AccessionNumber, the Study/Series/SOP Instance UIDs, InstitutionName/Address, the physician and
operator names, StudyDate/Time, AcquisitionDateTime, DeviceSerialNumber, StationName, StudyID,
RequestAttributesSequence) and the long tail (free-text comments and descriptions, GPS tags, clinical-trial and
RT identifiers, every date/time of the workflow). Attributes the table lists but that pydicom 3.0's dictionary
does not know yet (tags added in 2025-2026) are not here; :func:`safe_dicom_header` drops them anyway because
it only shows allowlisted keywords. Private attributes and overlay/curve groups are removed by the profile as
a class (Table E.1-1 "Private attributes", "Overlay Data", "Curve Data") and are never shown here either.

:func:`safe_dicom_header` is *allowlist-minded*: it shows only technical attributes from
:data:`DISPLAY_KEYWORDS` (image geometry, pixel encoding, windowing, exposure, equipment model) and on top of
that drops anything in :data:`PHI_KEYWORDS`, any private tag, any keyword ending in Date, Time, DateTime or UID,
person names (VR PN), sequences and binary values. A keyword missing from the allowlist is hidden, never shown.
"""

from __future__ import annotations

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

# DICOM PS3.15 (2026c) Table E.1-1, all actions (X, Z, D, U, X/Z, X/D, X/Z/D, X/Z/U*, Z/D); pydicom keywords.
PHI_KEYWORDS: frozenset[str] = frozenset(
    (
        "AccessionNumber", "AcquisitionComments", "AcquisitionContextDescription", "AcquisitionContextSequence",
        "AcquisitionDate", "AcquisitionDateTime", "AcquisitionDeviceProcessingDescription",
        "AcquisitionFieldOfViewLabel", "AcquisitionProtocolDescription", "AcquisitionTime", "AcquisitionUID",
        "ActualHumanPerformersSequence", "AdditionalPatientHistory", "AddressTrial", "AdmissionID", "AdmittingDate",
        "AdmittingDiagnosesCodeSequence", "AdmittingDiagnosesDescription", "AdmittingTime",
        "AffectedSOPInstanceUID", "Allergies", "AnnotationGroupDescription", "AnnotationGroupLabel",
        "AnnotationGroupUID", "ApprovalStatusDateTime", "Arbitrary", "AssertionDateTime",
        "AssertionExpirationDateTime", "AttributeModificationDateTime", "AuthorObserverSequence", "BarcodeValue",
        "BeamDescription", "BeamHoldTransitionDateTime", "BolusDescription", "BranchOfService", "CalibrationDate",
        "CalibrationDateTime", "CalibrationTime", "CameraOwnerName", "CassetteID", "CertificateOfSigner",
        "CertifiedTimestamp", "ChannelDerivationDescription", "ChannelLabel", "ClinicalTrialCoordinatingCenterName",
        "ClinicalTrialProtocolEthicsCommitteeApprovalNumber", "ClinicalTrialProtocolEthicsCommitteeName",
        "ClinicalTrialProtocolID", "ClinicalTrialProtocolName", "ClinicalTrialSeriesDescription",
        "ClinicalTrialSeriesID", "ClinicalTrialSiteID", "ClinicalTrialSiteName", "ClinicalTrialSponsorName",
        "ClinicalTrialSubjectID", "ClinicalTrialSubjectReadingID", "ClinicalTrialTimePointDescription",
        "ClinicalTrialTimePointID", "CommentsOnRadiationDose", "CommentsOnThePerformedProcedureStep",
        "CompensatorDescription", "ConcatenationUID", "ConceptualVolumeCombinationDescription",
        "ConceptualVolumeDescription", "ConceptualVolumeUID", "ConfidentialityConstraintOnPatientDataDescription",
        "ConstituentConceptualVolumeUID", "ConsultingPhysicianIdentificationSequence", "ConsultingPhysicianName",
        "ContainerComponentID", "ContainerDescription", "ContainerIdentifier",
        "ContentCreatorIdentificationCodeSequence", "ContentCreatorName", "ContentDate", "ContentSequence",
        "ContentTime", "ContextGroupLocalVersion", "ContextGroupVersion", "ContrastBolusAgent",
        "ContrastBolusStartTime", "ContrastBolusStopTime", "ContributionDateTime", "ContributionDescription",
        "CountryOfResidence", "CreationDate", "CreationTime", "CurrentObserverTrial", "CurrentPatientLocation",
        "CurveData", "CurveDate", "CurveTime", "CustodialOrganizationSequence", "DataSetTrailingPadding", "Date",
        "DateOfDocumentOrVerbalTransactionTrial", "DateOfInstallation", "DateOfLastCalibration",
        "DateOfLastDetectorCalibration", "DateOfManufacture", "DateOfSecondaryCapture", "DateTime",
        "DateTimeOfLastCalibration", "DecayCorrectionDateTime", "DecompositionDescription", "DerivationDescription",
        "DestinationAE", "DetectorID", "DeviceAlternateIdentifier", "DeviceDescription", "DeviceLabel",
        "DeviceSerialNumber", "DeviceSettingDescription", "DeviceUID", "DigitalSignatureDateTime",
        "DigitalSignatureUID", "DigitalSignaturesSequence", "DimensionOrganizationUID", "DischargeDate",
        "DischargeDiagnosisDescription", "DischargeTime", "DisplacementReferenceLabel", "DistributionAddress",
        "DistributionName", "DoseReferenceDescription", "DoseReferenceUID", "DosimetricObjectiveUID",
        "EffectiveDateTime", "EncapsulatedDocument", "EndAcquisitionDateTime", "EntityDescription", "EntityLabel",
        "EntityLongLabel", "EntityName", "EquipmentFrameOfReferenceDescription",
        "EthicsCommitteeApprovalEffectivenessEndDate", "EthicsCommitteeApprovalEffectivenessStartDate",
        "EthnicGroup", "EthnicGroupCodeSequence", "ExclusionStartDateTime", "ExpectedCompletionDateTime",
        "FailedSOPInstanceUIDList", "FiducialUID", "FillerOrderNumberImagingServiceRequest",
        "FilterLookupTableDescription", "FindingsGroupRecordingDateTrial", "FindingsGroupRecordingTimeTrial",
        "FirstTreatmentDate", "FixationDeviceDescription", "FlowIdentifier", "FlowIdentifierSequence",
        "FractionGroupDescription", "FractionationNotes", "FrameAcquisitionDateTime", "FrameComments",
        "FrameOfReferenceUID", "FrameOriginTimestamp", "FrameReferenceDateTime", "FunctionalSyncPulse",
        "GPSAltitude", "GPSAltitudeRef", "GPSAreaInformation", "GPSDOP", "GPSDateStamp", "GPSDestBearing",
        "GPSDestBearingRef", "GPSDestDistance", "GPSDestDistanceRef", "GPSDestLatitude", "GPSDestLatitudeRef",
        "GPSDestLongitude", "GPSDestLongitudeRef", "GPSDifferential", "GPSImgDirection", "GPSImgDirectionRef",
        "GPSLatitude", "GPSLatitudeRef", "GPSLongitude", "GPSLongitudeRef", "GPSMapDatum", "GPSMeasureMode",
        "GPSProcessingMethod", "GPSSatellites", "GPSSpeed", "GPSSpeedRef", "GPSStatus", "GPSTimeStamp", "GPSTrack",
        "GPSTrackRef", "GPSVersionID", "GantryID", "GeneratorID", "GraphicAnnotationSequence",
        "HL7DocumentEffectiveTime", "HangingProtocolCreationDateTime", "HardcopyCreationDeviceID",
        "HumanPerformerName", "HumanPerformerOrganization", "IconImageSequence", "IdentifyingComments",
        "ImageComments", "ImagePresentationComments", "ImagingServiceRequestComments",
        "ImpedanceMeasurementDateTime", "Impressions", "InformationIssueDateTime", "InstanceCoercionDateTime",
        "InstanceCreationDate", "InstanceCreationTime", "InstanceCreatorUID", "InstanceOriginStatus",
        "InstitutionAddress", "InstitutionCodeSequence", "InstitutionName", "InstitutionalDepartmentName",
        "InstitutionalDepartmentTypeCodeSequence", "InstructionPerformedDateTime", "InsurancePlanIdentification",
        "IntendedFractionStartTime", "IntendedPhaseEndDate", "IntendedPhaseStartDate",
        "IntendedRecipientsOfResultsIdentificationSequence", "InterlockDateTime", "InterlockDescription",
        "InterlockOriginDescription", "InterpretationApprovalDate", "InterpretationApprovalTime",
        "InterpretationApproverSequence", "InterpretationAuthor", "InterpretationDiagnosisDescription",
        "InterpretationID", "InterpretationIDIssuer", "InterpretationRecordedDate", "InterpretationRecordedTime",
        "InterpretationRecorder", "InterpretationText", "InterpretationTranscriber",
        "InterpretationTranscriptionDate", "InterpretationTranscriptionTime", "InterventionDrugStartTime",
        "InterventionDrugStopTime", "IrradiationEventUID", "IssueDateOfImagingServiceRequest",
        "IssueTimeOfImagingServiceRequest", "IssuerOfAdmissionID", "IssuerOfAdmissionIDSequence",
        "IssuerOfClinicalTrialProtocolID", "IssuerOfClinicalTrialSeriesID", "IssuerOfClinicalTrialSiteID",
        "IssuerOfClinicalTrialSubjectID", "IssuerOfClinicalTrialSubjectReadingID",
        "IssuerOfClinicalTrialTimePointID", "IssuerOfPatientID", "IssuerOfServiceEpisodeID",
        "IssuerOfServiceEpisodeIDSequence", "IssuerOfTheContainerIdentifierSequence",
        "IssuerOfTheSpecimenIdentifierSequence", "LabelText", "LargePaletteColorLookupTableUID",
        "LastMenstrualDate", "LensMake", "LensModel", "LensSerialNumber", "LensSpecification",
        "LongDeviceDescription", "MAC", "MakerNote", "ManufacturerDeviceClassUID", "ManufacturerDeviceIdentifier",
        "MediaStorageSOPInstanceUID", "MedicalAlerts", "MedicalRecordLocator", "MilitaryRank",
        "ModifiedAttributesSequence", "ModifiedImageDate", "ModifiedImageDescription", "ModifiedImageTime",
        "ModifyingDeviceID", "ModifyingSystem", "MostRecentTreatmentDate", "MultienergyAcquisitionDescription",
        "MultiplexGroupLabel", "MultiplexGroupUID", "NameOfPhysiciansReadingStudy",
        "NamesOfIntendedRecipientsOfResults", "NetworkID", "NonconformingDataElementValue",
        "NonconformingModifiedAttributesSequence", "ObservationDateTime", "ObservationDateTrial",
        "ObservationStartDateTime", "ObservationSubjectUIDTrial", "ObservationTimeTrial", "ObservationUID",
        "Occupation", "OperatorIdentificationSequence", "OperatorsName", "OrderCallbackPhoneNumber",
        "OrderCallbackTelecomInformation", "OrderEnteredBy", "OrderEntererLocation", "OriginalAttributesSequence",
        "Originator", "OtherClinicalTrialProtocolIDsSequence", "OtherPatientIDs", "OtherPatientIDsSequence",
        "OtherPatientNames", "OverlayComments", "OverlayData", "OverlayDate", "OverlayTime", "OverrideDateTime",
        "PaletteColorLookupTableUID", "ParticipantSequence", "ParticipationDateTime", "PatientAddress",
        "PatientAge", "PatientBirthDate", "PatientBirthName", "PatientBirthTime", "PatientComments", "PatientID",
        "PatientInstitutionResidence", "PatientInsurancePlanCodeSequence", "PatientMotherBirthName", "PatientName",
        "PatientPrimaryLanguageCodeSequence", "PatientPrimaryLanguageModifierCodeSequence",
        "PatientReligiousPreference", "PatientSetupPhotoDescription", "PatientSetupUID", "PatientSex",
        "PatientSexNeutered", "PatientSize", "PatientState", "PatientTelecomInformation", "PatientTelephoneNumbers",
        "PatientTransportArrangements", "PatientTreatmentPreparationMethodDescription",
        "PatientTreatmentPreparationProcedureParameterDescription", "PatientWeight", "PerformedLocation",
        "PerformedProcedureStepDescription", "PerformedProcedureStepEndDate", "PerformedProcedureStepEndDateTime",
        "PerformedProcedureStepEndTime", "PerformedProcedureStepID", "PerformedProcedureStepStartDate",
        "PerformedProcedureStepStartDateTime", "PerformedProcedureStepStartTime", "PerformedStationAETitle",
        "PerformedStationGeographicLocationCodeSequence", "PerformedStationName",
        "PerformedStationNameCodeSequence", "PerformingPhysicianIdentificationSequence", "PerformingPhysicianName",
        "PersonAddress", "PersonIdentificationCodeSequence", "PersonName", "PersonTelecomInformation",
        "PersonTelephoneNumbers", "PhysicianApprovingInterpretation", "PhysiciansOfRecord",
        "PhysiciansOfRecordIdentificationSequence", "PhysiciansReadingStudyIdentificationSequence",
        "PlacerOrderNumberImagingServiceRequest", "PlateID", "PositionAcquisitionTemplateDescription",
        "PositionAcquisitionTemplateName", "PreMedication", "PregnancyStatus", "PrescriptionDescription",
        "PrescriptionNotes", "PrescriptionNotesSequence", "PresentationCreationDate", "PresentationCreationTime",
        "PresentationDisplayCollectionUID", "PresentationSequenceCollectionUID", "PriorTreatmentDoseDescription",
        "ProcedureStepCancellationDateTime", "ProductExpirationDateTime", "ProtocolName", "PyramidDescription",
        "PyramidLabel", "PyramidUID", "ROICreatorSequence", "ROIDateTime", "ROIDescription",
        "ROIGenerationDescription", "ROIInterpreter", "ROIInterpreterSequence", "ROIName", "ROIObservationDateTime",
        "ROIObservationDescription", "ROIObservationLabel", "RTAccessoryDeviceSlotID", "RTAccessoryHolderSlotID",
        "RTPhysicianIntentNarrative", "RTPlanDate", "RTPlanDescription", "RTPlanLabel", "RTPlanName", "RTPlanTime",
        "RTPrescriptionLabel", "RTToleranceSetLabel", "RTTreatmentApproachLabel", "RTTreatmentPhaseUID",
        "RadiationDoseIdentificationLabel", "RadiationDoseInVivoMeasurementLabel",
        "RadiationGenerationModeDescription", "RadiationGenerationModeLabel", "RadiopharmaceuticalStartDateTime",
        "RadiopharmaceuticalStartTime", "RadiopharmaceuticalStopDateTime", "RadiopharmaceuticalStopTime",
        "ReasonForOmissionDescription", "ReasonForRequestedProcedureCodeSequence", "ReasonForStudy",
        "ReasonForSuperseding", "ReasonForTheAttributeModification", "ReasonForTheImagingServiceRequest",
        "ReasonForTheRequestedProcedure", "ReasonForVisit", "ReasonForVisitCodeSequence", "ReceivingAE",
        "RecordedRTControlPointDateTime", "ReferencedConceptualVolumeUID", "ReferencedDateTime",
        "ReferencedDigitalSignatureSequence", "ReferencedDoseReferenceUID", "ReferencedDosimetricObjectiveUID",
        "ReferencedFiducialsUID", "ReferencedFrameOfReferenceUID",
        "ReferencedGeneralPurposeScheduledProcedureStepTransactionUID", "ReferencedImageSequence",
        "ReferencedObservationUIDTrial", "ReferencedPatientAliasSequence", "ReferencedPatientPhotoSequence",
        "ReferencedPatientSequence", "ReferencedPerformedProcedureStepSequence", "ReferencedSOPInstanceMACSequence",
        "ReferencedSOPInstanceUID", "ReferencedSOPInstanceUIDInFile", "ReferencedStudySequence",
        "ReferencedTreatmentPositionGroupUID", "ReferringPhysicianAddress",
        "ReferringPhysicianIdentificationSequence", "ReferringPhysicianName", "ReferringPhysicianTelephoneNumbers",
        "RegionOfResidence", "RelatedFrameOfReferenceUID", "RequestAttributesSequence", "RequestedContrastAgent",
        "RequestedProcedureComments", "RequestedProcedureDescription", "RequestedProcedureID",
        "RequestedProcedureLocation", "RequestedSOPInstanceUID", "RequestedSeriesDescription", "RequestingAE",
        "RequestingPhysician", "RequestingService", "RespiratoryMotionCompensationTechniqueDescription",
        "ResponsibleOrganization", "ResponsiblePerson", "ResultsComments", "ResultsDistributionListSequence",
        "ResultsID", "ResultsIDIssuer", "RetrieveAETitle", "ReviewDate", "ReviewTime", "ReviewerName",
        "SOPAuthorizationDateTime", "SOPInstanceUID", "SafePositionExitDate", "SafePositionExitTime",
        "SafePositionReturnDate", "SafePositionReturnTime", "ScheduledAdmissionDate", "ScheduledAdmissionTime",
        "ScheduledDischargeDate", "ScheduledDischargeTime", "ScheduledHumanPerformersSequence",
        "ScheduledPatientInstitutionResidence", "ScheduledPerformingPhysicianIdentificationSequence",
        "ScheduledPerformingPhysicianName", "ScheduledProcedureStepDescription", "ScheduledProcedureStepEndDate",
        "ScheduledProcedureStepEndTime", "ScheduledProcedureStepExpirationDateTime", "ScheduledProcedureStepID",
        "ScheduledProcedureStepLocation", "ScheduledProcedureStepModificationDateTime",
        "ScheduledProcedureStepStartDate", "ScheduledProcedureStepStartDateTime", "ScheduledProcedureStepStartTime",
        "ScheduledStationAETitle", "ScheduledStationGeographicLocationCodeSequence", "ScheduledStationName",
        "ScheduledStationNameCodeSequence", "ScheduledStudyLocation", "ScheduledStudyLocationAETitle",
        "ScheduledStudyStartDate", "ScheduledStudyStartTime", "ScheduledStudyStopDate", "ScheduledStudyStopTime",
        "SecondaryCaptureDeviceID", "SelectorAEValue", "SelectorASValue", "SelectorDAValue", "SelectorDTValue",
        "SelectorLOValue", "SelectorLTValue", "SelectorOBValue", "SelectorPNValue", "SelectorSHValue",
        "SelectorSTValue", "SelectorTMValue", "SelectorUNValue", "SelectorURValue", "SelectorUTValue", "SeriesDate",
        "SeriesDescription", "SeriesInstanceUID", "SeriesTime", "ServiceEpisodeDescription", "ServiceEpisodeID",
        "SetupTechniqueDescription", "ShieldingDeviceDescription", "SlideIdentifier", "SmokingStatus",
        "SourceConceptualVolumeUID", "SourceEndDateTime", "SourceFrameOfReferenceUID", "SourceIdentifier",
        "SourceImageSequence", "SourceManufacturer", "SourceOfPreviousValues", "SourceSerialNumber",
        "SourceStartDateTime", "SourceStrengthReferenceDate", "SourceStrengthReferenceTime", "SpecialNeeds",
        "SpecimenAccessionNumber", "SpecimenDetailedDescription", "SpecimenIdentifier",
        "SpecimenPreparationSequence", "SpecimenShortDescription", "SpecimenUID", "StartAcquisitionDateTime",
        "StationAETitle", "StationName", "StorageMediaFileSetUID", "StructureSetDate", "StructureSetDescription",
        "StructureSetLabel", "StructureSetName", "StructureSetTime", "StudyArrivalDate", "StudyArrivalTime",
        "StudyComments", "StudyCompletionDate", "StudyCompletionTime", "StudyDate", "StudyDescription", "StudyID",
        "StudyIDIssuer", "StudyInstanceUID", "StudyReadDate", "StudyReadTime", "StudyTime", "StudyVerifiedDate",
        "StudyVerifiedTime", "SubstanceAdministrationDateTime", "SynchronizationFrameOfReferenceUID",
        "TableTopPositionAlignmentUID", "TargetUID", "TelephoneNumberTrial", "TemplateExtensionCreatorUID",
        "TemplateExtensionOrganizationUID", "TemplateLocalVersion", "TemplateVersion", "TextComments", "TextString",
        "Time", "TimeOfDocumentCreationOrVerbalTransactionTrial", "TimeOfLastCalibration",
        "TimeOfLastDetectorCalibration", "TimeOfSecondaryCapture", "TimezoneOffsetFromUTC", "TopicAuthor",
        "TopicKeywords", "TopicSubject", "TopicTitle", "TrackingUID", "TransactionUID",
        "TransducerIdentificationSequence", "TreatmentControlPointDate", "TreatmentControlPointTime",
        "TreatmentDate", "TreatmentMachineName", "TreatmentPositionGroupLabel", "TreatmentPositionGroupUID",
        "TreatmentSessionUID", "TreatmentSite", "TreatmentSites", "TreatmentTechniqueNotes", "TreatmentTime",
        "TreatmentToleranceViolationDateTime", "TreatmentToleranceViolationDescription", "UDISequence", "UID",
        "UnformattedTextValue", "UniqueDeviceIdentifier", "UserContentLabel", "UserContentLongLabel",
        "VerbalSourceIdentifierCodeSequenceTrial", "VerbalSourceTrial", "VerificationDateTime",
        "VerifyingObserverIdentificationCodeSequence", "VerifyingObserverName", "VerifyingObserverSequence",
        "VerifyingOrganization", "VisitComments", "WaveformAnnotationSequence", "WaveformFilterDescription",
        "XRayDetectorID", "XRayDetectorLabel", "XRaySourceID",
    )
)

# Technical attributes a viewer may show (none of them is in Table E.1-1 and none holds free text about the
# patient). Everything else, including attributes not listed anywhere, is hidden. Durations whose keyword ends in
# "Time" (ExposureTime) are left out too: the *Time rule is kept blunt on purpose.
DISPLAY_KEYWORDS: frozenset[str] = frozenset(
    (
        "Modality", "ConversionType", "ImageType", "PresentationIntentType", "BodyPartExamined", "ViewPosition",
        "PatientPosition", "PatientOrientation", "ImageLaterality", "Laterality", "SeriesNumber", "InstanceNumber",
        "AcquisitionNumber", "Rows", "Columns", "SamplesPerPixel", "PhotometricInterpretation",
        "PlanarConfiguration", "NumberOfFrames", "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation",
        "PixelSpacing", "ImagerPixelSpacing", "PixelSpacingCalibrationType", "PixelAspectRatio",
        "EstimatedRadiographicMagnificationFactor", "RescaleIntercept", "RescaleSlope", "RescaleType",
        "WindowCenter", "WindowWidth", "VOILUTFunction", "PresentationLUTShape", "LossyImageCompression",
        "LossyImageCompressionRatio", "LossyImageCompressionMethod", "BurnedInAnnotation",
        "RecognizableVisualFeatures", "PatientIdentityRemoved", "KVP", "XRayTubeCurrent",
        "Exposure", "ExposureInuAs", "XRayTubeCurrentInuA", "AveragePulseWidth",
        "RelativeXRayExposure", "ExposureIndex", "TargetExposureIndex", "DeviationIndex", "Sensitivity",
        "DistanceSourceToDetector", "DistanceSourceToPatient", "BodyPartThickness", "Grid", "FilterType",
        "FilterMaterial", "FocalSpots", "AnodeTargetMaterial", "GeneratorPower", "CollimatorShape",
        "FieldOfViewShape", "FieldOfViewDimensions", "DetectorType", "DetectorConfiguration", "DetectorBinning",
        "PositionerType", "Manufacturer", "ManufacturerModelName", "SoftwareVersions",
    )
)

_HIDDEN_VRS = frozenset({"SQ", "PN", "DA", "DT", "TM", "UI", "OB", "OD", "OF", "OL", "OV", "OW", "UN", "UT", "LT"})
_HIDDEN_SUFFIXES = ("Date", "Time", "DateTime", "UID", "Timestamp")
_MAX_VALUE_CHARS = 64


def is_display_safe(elem: DataElement) -> bool:
    """Whether ``elem`` may be shown: allowlisted, public, not PHI, not a date/time/UID, name or blob."""
    keyword = elem.keyword
    return (
        not elem.tag.is_private
        and keyword in DISPLAY_KEYWORDS
        and keyword not in PHI_KEYWORDS
        and not keyword.endswith(_HIDDEN_SUFFIXES)
        and elem.VR not in _HIDDEN_VRS
    )


def safe_dicom_header(ds: Dataset) -> dict[str, str]:
    """A display-safe ``{keyword: value}`` view of the top level of ``ds`` (see the module docstring).

    Multi-valued attributes are joined with ``\\`` as in DICOM; values are cut at 64 characters; empty values,
    values with control characters and values pydicom cannot convert are left out. Sequences are never entered.
    """
    shown: dict[str, str] = {}
    for tag in list(ds.keys()):
        try:
            elem = ds[tag]  # converts a raw element lazily: may fail on a corrupt file
            safe = is_display_safe(elem)
            text = _format_value(elem.value) if safe else ""
        except Exception:  # noqa: BLE001 - pydicom's lazy conversion of a corrupt element can raise anything
            continue
        if text:
            shown[elem.keyword] = text
    return shown


def _format_value(value: object) -> str:
    if value is None or isinstance(value, (bytes, bytearray)):
        return ""
    items = list(value) if isinstance(value, MultiValue | list | tuple) else [value]
    text = "\\".join(str(item).strip() for item in items).strip()
    return text[:_MAX_VALUE_CHARS] if text.isprintable() else ""  # control bytes: a corrupt value, not shown
